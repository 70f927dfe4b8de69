"""Scripts a runtime's Python runs by path. Python puts a script's folder first on its
sys.path, so they live apart from every other module: a `tensorflow.py` beside them
would be imported in place of TensorFlow."""
