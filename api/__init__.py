"""The FastAPI service and the supervisors' web page."""
