"""The container engine: pure Python, no Django. See DESIGN.md for the parts."""
