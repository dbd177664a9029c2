"""The tarball executor's disk work: safe unpacking (``unpack``) and release slots (``slots``)."""
