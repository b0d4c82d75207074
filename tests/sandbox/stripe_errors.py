"""What the fake Stripe refuses, as the stripe client raises it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe


def invalid(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as info:
        fn(*args, **kwargs)
    return info.value
