"""Qt-free domain code: reading, segmenting, preprocessing and classifying blood cells."""
