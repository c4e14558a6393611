"""The HTTP service (``workbench serve``): one aiohttp app, one router per subsystem.

Needs the ``service`` extra (aiohttp, pydantic). Import :func:`workbench.api.app.create_app`
to build the app and :class:`workbench.api.routing.ApiRouter` to declare routes.
"""

__all__: list[str] = []
