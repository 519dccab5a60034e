"""The service's reading of a JSON request body against its pydantic schema: one sentence per problem."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


def body_problems(exc: ValidationError, schema: type[BaseModel]) -> str:
    """The problems of a request body, joined by "; ": an unknown field with the allowed ones, a missing field, or a
    field's own message."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(body)"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown field '{where}' (allowed: {', '.join(schema.model_fields)})")
        elif error["type"] == "missing":
            problems.append(f"field '{where}' is required")
        else:
            problems.append(f"field '{where}': {error['msg']}")
    return "; ".join(problems)
