"""Greek first: what an admin reads, in Greek or English (gettext, catalogs read by Babel).

The language is ``KASTRO_LANG``, else gettext's own order (``LANGUAGE``, ``LC_ALL``,
``LC_MESSAGES``, ``LANG``): Greek when it starts with ``el``, English otherwise. The English
text is the message id; ``kastro/locale/el/LC_MESSAGES/kastro.po`` holds the Greek, in git as
the only source (Babel reads it and hands gettext the compiled catalog in memory, once per
process: no compiled file to forget to rebuild).

A message built with :func:`t` is a :class:`Text`: a ``str`` holding the English (so
comparisons, sorting and logs stay as they were) that also remembers its template and values,
so :func:`tr` can say it in the admin's language when it is shown. Templates are always
``str.format`` templates (``{name}``; a literal brace is doubled, ``{{``), and a translation
must use the same names (tested).
"""

from __future__ import annotations

import functools
import gettext
import io
import os
from pathlib import Path
from typing import Any

LOCALE = Path(__file__).parent / "locale"
DOMAIN = "kastro"
LANGUAGES = ("en", "el")
_ENVIRONMENT = ("KASTRO_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


class Text(str):
    """English text that can be said in another language (see :func:`t`)."""

    template: str
    values: dict[str, Any]

    def __new__(cls, template: str, values: dict[str, Any]) -> Text:
        made = super().__new__(cls, template.format(**values))
        made.template, made.values = template, values
        return made

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy, pickle: a Text again
        return (Text, (self.template, self.values))


class Joined(Text):
    """Texts in a row (``"; "``): English now, each one in the admin's language when shown."""

    items: list[str]
    separator: str

    def __new__(cls, items: list[str], separator: str = "; ") -> Joined:
        made = str.__new__(cls, separator.join(items))
        made.template, made.values = "{0}", {}
        made.items, made.separator = list(items), separator
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (Joined, (self.items, self.separator))


def t(template: str, **values: Any) -> Text:
    """A message to translate: ``t("'{name}' is not a valid zone name", name=zone)``."""
    return Text(template, values)


def language() -> str:
    """``el`` or ``en``, from the environment at the time of the call."""
    for variable in _ENVIRONMENT:
        value = os.environ.get(variable, "").split(":")[0].strip().lower()
        if value:
            return "el" if value.startswith("el") else "en"
    return "en"


@functools.cache
def catalog(lang: str) -> gettext.NullTranslations:
    """The translations of one language (English: the message ids themselves)."""
    po = LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == "en" or not po.is_file():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as handle:
        messages = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def N_(message: str) -> str:  # noqa: N802 (gettext's own name for it)
    """Marks a fixed message for the catalog where it is defined; :func:`_` says it later."""
    return message


def _(message: str) -> str:
    """A fixed message (no values) in the admin's language."""
    return catalog(language()).gettext(message)


# What argparse says itself (it asks gettext for these words): in the admin's language too.
ARGPARSE_WORDS = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"),
    N_("expected one argument"),
    N_("expected at least one argument"),
    N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
)


def speak_argparse() -> None:
    """argparse's own words in the admin's language: argparse calls its module's gettext
    function for them, looked up when it speaks, so pointing it at ours is enough."""
    import argparse

    argparse._ = _  # type: ignore[attr-defined]


def tr(message: str) -> str:
    """Any message in the admin's language: a :class:`Text` by its template, translating
    the values that are texts too; a plain string as a message id (unknown: as it is)."""
    if isinstance(message, Joined):
        return tr(message.separator).join(tr(item) for item in message.items)
    if not isinstance(message, Text):
        return _(message) if message else message
    values = {k: tr(v) if isinstance(v, Text) else v for k, v in message.values.items()}
    translated = _(message.template)
    try:
        return translated.format(**values)
    except (KeyError, IndexError, ValueError):  # a broken translation: never lose the message
        return str(message)
