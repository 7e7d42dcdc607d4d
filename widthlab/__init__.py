"""widthlab: what does making a neural network wider do to what it learns?"""

__version__ = "0.1.0"
