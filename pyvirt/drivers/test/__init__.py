"""The in-memory test driver (``test:///default``)."""
