"""2D backends. Each module imports its framework lazily (inside the class), so importing
this package is light."""
