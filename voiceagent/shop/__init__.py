"""The shop's data behind a small repository interface (SQLite by default; a real shop backend
implements the same methods)."""

from .repository import Order, Product, ShopRepository, open_shop

__all__ = ["Order", "Product", "ShopRepository", "open_shop"]
