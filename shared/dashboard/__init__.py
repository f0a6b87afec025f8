"""The status page's pure parts: the pool view, its charts, times and HTML."""
