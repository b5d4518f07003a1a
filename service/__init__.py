"""The REST service: FastAPI app factory, settings (XMR_*), routes, dynamic batching, the page."""
