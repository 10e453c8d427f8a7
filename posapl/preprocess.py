"""Evaluation-time image preprocessing shared by training, indexing and the service."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize() -> transforms.Normalize:
    return transforms.Normalize(IMAGE_MEAN, IMAGE_STD)


def eval_transform(image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """Square bicubic resize (no crop, as the reference evaluates) to the model's input size."""
    return transforms.Compose(
        [
            transforms.Lambda(lambda image: image.convert("RGB")),
            transforms.Resize((image_size, image_size), interpolation=InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            normalize(),
        ]
    )
