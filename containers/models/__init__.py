from .images import Image, ImageTag

__all__ = ["Image", "ImageTag"]
