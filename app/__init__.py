"""boxal's REST service: projects, images, the box pool, leased queries, labels and rounds."""
