"""Build images from Dockerfiles: parser, instructions, expansion, context and the builder."""
