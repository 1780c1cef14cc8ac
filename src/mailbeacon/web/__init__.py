"""HTTP: the tracking routes, the REST API, and the server that runs them."""
