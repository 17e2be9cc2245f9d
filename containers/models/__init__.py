from .containers import Container
from .images import Image, ImageTag

__all__ = ["Container", "Image", "ImageTag"]
