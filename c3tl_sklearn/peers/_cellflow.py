"""placeholder"""
CellFlowPeer = None
def read_cellflow_predictions(): pass
