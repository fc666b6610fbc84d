"""A real Django project behind the gateway: users from `Remote-User`, staff from `Remote-Groups`."""
