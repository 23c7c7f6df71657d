"""Licence plate recognition on top of OpenCV's DNN module, with the models of ``hyperlpr2``.

The Caffe models ship inside the ``hyperlpr2`` wheel (MIT); nothing is fetched at run time.
The pipeline (SSD detection, corner refinement, CTC recognition) is run here rather than
through ``hyperlpr2``'s own module, which loads every model at import and fails on frames
without a plate. Chinese plates only: the character table has provinces, digits and letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.errors import EdgeAgentError

CHARS = (
    "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
    "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ港学使警澳挂军北南广沈兰成济海民航空"
)
DETECT_SCORE = 0.5


class PlateEngineMissing(EdgeAgentError):
    """OpenCV, its Caffe importer or the hyperlpr2 model files are not available."""


@dataclass(frozen=True)
class PlateRead:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the input image


def _model_path(name: str) -> str:
    try:
        root = resources.files("hyperlpr2") / "models" / "dnn" / name
    except ModuleNotFoundError as exc:
        raise PlateEngineMissing("hyperlpr2 is not installed (pip install --no-deps "
                                 "hyperlpr2==2.0.0)") from exc
    path = str(root)
    if not root.is_file():
        raise PlateEngineMissing(f"hyperlpr2 model file missing: {path}")
    return path


class PlateEngine:
    """Reads Chinese licence plates from a BGR or gray uint8 image."""

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise PlateEngineMissing("OpenCV (cv2) is not installed") from exc
        self._cv2: Any = cv2

        reader = getattr(cv2.dnn, "readNetFromCaffe", None)
        if reader is None:
            raise PlateEngineMissing(
                f"OpenCV {cv2.__version__} has no Caffe importer (removed in OpenCV 5); the "
                "hyperlpr2 models need OpenCV 4.x or a conversion to ONNX")

        def net(stem: str) -> Any:
            return reader(_model_path(stem + ".prototxt"), _model_path(stem + ".caffemodel"))

        self._ssd = net("mininet_ssd_v1")
        self._refine = net("refinenet")
        self._rec = net("SegmenationFree-Inception")

    def read(self, image: NDArray[Any]) -> list[PlateRead]:
        cv2 = self._cv2
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim != 3 or image.shape[0] < 16 or image.shape[1] < 16:
            return []
        image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
        reads: list[PlateRead] = []
        for box in self._detect(image):
            try:
                crop = self._loose_crop(image, box, 120 / 48)
                if crop.shape[0] < 8 or crop.shape[1] < 8:
                    continue
                text, confidence = self._recognise(self._finetune(crop))
            except cv2.error:
                continue
            if len(text) >= 7:
                reads.append(PlateRead(text, confidence, box))
        return reads

    def _detect(self, image: NDArray[Any]) -> list[tuple[int, int, int, int]]:
        rows, cols = image.shape[:2]
        means = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # R, G, B
        stds = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        rgb = image[:, :, ::-1].astype(np.float32) / 255.0
        tensor = ((rgb - means) / stds).transpose(2, 0, 1)[np.newaxis]
        self._ssd.setInput(np.ascontiguousarray(tensor))
        out = self._ssd.forward()
        boxes: list[tuple[int, int, int, int]] = []
        for det in out.reshape(-1, 7):
            if float(det[2]) <= DETECT_SCORE:
                continue
            x1, y1 = max(int(det[3] * cols), 0), max(int(det[4] * rows), 0)
            x2, y2 = min(int(det[5] * cols), cols - 1), min(int(det[6] * rows), rows - 1)
            if x2 - x1 > 4 and y2 - y1 > 2:
                boxes.append((x1, y1, x2, y2))
        return boxes

    @staticmethod
    def _loose_crop(image: NDArray[Any], box: tuple[int, int, int, int], aspect: float,
                    padding: float = 1.7) -> NDArray[Any]:
        x1, y1, x2, y2 = box
        cx, cy = (x2 + x1) // 2, (y2 + y1) // 2
        if (x2 - x1) / (y2 - y1) > aspect:
            w = int((x2 - x1) * padding)
            h = int(w / aspect)
        else:
            h = int((y2 - y1) * padding)
            w = int(h * aspect)
        return image[max(cy - h // 2, 0):cy + h // 2, max(cx - w // 2, 0):cx + w // 2]

    def _corners(self, image: NDArray[Any]) -> NDArray[Any]:
        cv2 = self._cv2
        blob = cv2.dnn.blobFromImage(cv2.resize(image, (120, 48)), scalefactor=0.0078125,
                                     size=(120, 48), mean=(127.5, 127.5, 127.5),
                                     swapRB=False, crop=False)
        self._refine.setInput(blob)
        h, w = image.shape[:2]
        pts: NDArray[Any] = self._refine.forward("conv6-3").reshape(4, 2) * np.array([w, h])
        return pts.astype(np.float32)

    def _finetune(self, crop: NDArray[Any], scale: float = 3.0) -> NDArray[Any]:
        cv2 = self._cv2
        pts = self._corners(crop)
        cx, cy, cw, ch = 64, 24, 64, 24
        target = np.array([[cx - cw // 2, cy - ch // 2], [cx + cw // 2, cy - ch // 2],
                           [cx + cw // 2, cy + ch // 2], [cx - cw // 2, cy + ch // 2]],
                          dtype=np.float32) * scale
        mat, _ = cv2.estimateAffinePartial2D(pts, target, True)
        if mat is None:
            raise cv2.error("no affine fit")
        g = cv2.warpAffine(crop, mat, (int(120 * scale), int(48 * scale)))
        pts = self._corners(g)
        dst = np.array([[0, 0], [136, 0], [136, 36], [0, 36]], dtype=np.float32)
        return cv2.warpPerspective(g, cv2.getPerspectiveTransform(pts, dst), (136, 36))  # type: ignore[no-any-return]

    def _recognise(self, plate: NDArray[Any]) -> tuple[str, float]:
        cv2 = self._cv2
        temp = cv2.resize(plate, (160, 40)).transpose(1, 0, 2)
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(temp), 1 / 255.0, (40, 160),
                                     (0, 0, 0), False, False)
        self._rec.setInput(blob)
        pred = np.squeeze(self._rec.forward()[0][:, 2:, :]).T
        best = pred.argmax(axis=1)
        text, total, prev = "", 0.0, -1
        for i, idx in enumerate(best):
            if idx < len(CHARS) and idx != prev:
                text += CHARS[idx]
                total += float(pred[i][idx])
            prev = int(idx)
        return text, (total / len(text) if text else 0.0)


_ENGINE: PlateEngine | None = None


def default_engine() -> PlateEngine:
    """The shared engine (models loaded once); PlateEngineMissing when not installed."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = PlateEngine()
    return _ENGINE
