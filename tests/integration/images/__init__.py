"""Helpers for the image tests: OCI layouts written by hand, registries
(Debian's docker-registry) started on 127.0.0.1, a token server, and a
counting proxy and a stub registry for what a real registry won't do."""
