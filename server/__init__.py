"""The wavtok codec service: FastAPI app (`server.app.create_app`) served by uvicorn."""
