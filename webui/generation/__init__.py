"""Generation: typed requests → diffusers pipelines → images with A1111 infotext."""
