"""The network both engines run: a composite in, class probabilities and the pooled feature out.

``InspectionNet`` wraps the trained ViT with its own preprocessing (scale to [0, 1], resize to the
model's side, normalise), so the torch engine, the exported ONNX graph and the bundle's OOD
calibration compute the same thing from the same (N, H, W, 3) float array of 0..255 values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitinspect.model.vit import InputSpec


class InspectionNet(torch.nn.Module):
    """(N, H, W, 3) float 0..255  ->  (proba (N, K), features (N, D))."""

    def __init__(self, vit, spec: InputSpec):
        super().__init__()
        self.vit = vit.eval()
        self.size = spec.size
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor):
        x = images.permute(0, 3, 1, 2) / 255.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        hidden = self.vit.vit(pixel_values=x).last_hidden_state  # final layer norm applied
        features = hidden[:, 0]  # the CLS token: what the classifier reads
        proba = torch.softmax(self.vit.classifier(features), dim=-1)
        return proba, features


@torch.no_grad()
def run(net: InspectionNet, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 -> (proba (N, K), features (N, D)) float32, in batches."""
    probas, feats = [], []
    for i in range(0, len(images), batch_size):
        p, f = net(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)))
        probas.append(p.numpy())
        feats.append(f.numpy())
    if not probas:
        return np.zeros((0, net.vit.config.num_labels), np.float32), np.zeros((0, net.vit.config.hidden_size), np.float32)
    return np.concatenate(probas), np.concatenate(feats)


def export_onnx(net: InspectionNet, image_size: int, path: str | Path, opset: int = 17) -> None:
    """``torch.onnx.export`` with a dynamic batch axis; inputs ``images``, outputs ``proba`` and ``features``."""
    import warnings

    example = torch.zeros(2, image_size, image_size, 3)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes: the graph is checked by a test
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=["images"], output_names=["proba", "features"],
                          dynamic_axes={"images": {0: "batch"}, "proba": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=opset, dynamo=False)
