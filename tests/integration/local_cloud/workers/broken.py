"""A handler module whose import fails, as a missing dependency does on Lambda."""

import a_module_that_is_not_installed  # noqa: F401


def handler(event, context):  # type: ignore[no-untyped-def]
    return event
