"""The gptme plugin end to end (the real `gptme` CLI), and the sandbox its unit tests share."""
