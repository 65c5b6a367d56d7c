"""The floor for `mnistctl serve`'s overhead (benchmarks/serve_load.py): a plain FastAPI endpoint on
the same uvicorn -- Pillow decode, grey, invert, resize to 28 x 28, one ONNX Runtime run of the
built-in model. It misreads real photos (no cleaning, no fitting): a floor for cost, not a rival.

    python -m uvicorn benchmarks.naive_serve:app --port 8001
"""

import io

import numpy as np
import onnxruntime as ort
from fastapi import Depends, FastAPI, Request
from PIL import Image

from mnistctl.inference.onnx_format import pretrained_onnx_path

app = FastAPI()
session = ort.InferenceSession(str(pretrained_onnx_path()), providers=["CPUExecutionProvider"])


async def body(request: Request) -> bytes:
    return await request.body()


@app.post("/predict")
def predict(data: bytes = Depends(body)) -> dict:
    grey = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BOX)
    probs = session.run(["probabilities"], {"pixels": (255 - np.asarray(grey, np.uint8))[None, None]})[0][0]
    return {"prediction": int(probs.argmax()), "confidence": float(probs.max())}
