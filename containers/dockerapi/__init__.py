"""The Docker Engine API served by webengine, so that the docker CLI and docker-py drive this node.

httpserver.py speaks HTTP/1.1 (h11, one thread a connection, hijacking for attach and exec),
server.py listens (unix socket, trusted; TCP, with a bearer token), auth.py says who asks,
scoping.py wraps every route in its team rule, router.py maps paths and errors, and the
`*_routes.py` modules are the endpoints, named after moby's routers. Endpoints
call `containers.services` and the engine objects it returns; what they hold themselves (exec
records, attaches waiting for a start) lives in `state.py`.
"""
