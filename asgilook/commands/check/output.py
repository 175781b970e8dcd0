"""What ``asgilook check`` prints: a summary for people, or JSON for programs.

:func:`summary` lists a few problems of each kind (:data:`EXAMPLES`) and
concludes; :func:`document` (``--json``) has every one. :func:`size` and
:func:`age` say bytes and seconds in few digits, here and in each problem's
detail.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from asgilook.commands.check.report import ANIMATION
from asgilook.commands.check.report import KEPT_ORIGINAL
from asgilook.commands.check.report import ORIGINAL
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report

#: Problems of each kind that the summary shows; ``--json`` has every one.
EXAMPLES = 5

_HEADINGS = {
    Kind.NO_PICTURE: 'Images without their picture (the original is missing or empty)',
    Kind.THUMBNAILS: 'Images missing thumbnails',
    Kind.ANIMATION: 'Images missing their animation (it cannot be made again)',
    Kind.KEPT_ORIGINAL: 'Images missing their original kept as uploaded (it '
    'cannot be made again)',
    Kind.DAMAGED: 'Damaged objects (they fail authentication: damaged, swapped, '
    'or sealed with a key that is not configured)',
    Kind.ORPHAN: 'Orphans ({files} and thumbnail folders no image refers to)',
    Kind.PARTIAL: 'Stale .partial files (writes that never finished)',
}


def summary(report: Report) -> str:
    """What a person reads: what was checked, found and repaired."""
    noun = 'file' if report.local else 'object'
    where = report.storage
    if report.renditions is not None:
        where += f' (renditions in {report.renditions})'
    verified = ', every object of its images read whole' if report.verify else ''
    lines = [
        f'Checked {where} against its index ({report.index}): '
        f'{_count(report.images, "image")}, {_count(report.files, noun)}, '
        f'{size(report.bytes)}{verified}.'
    ]
    for kind, problems in report.problems.items():
        if problems:
            lines.append('')
            heading = _HEADINGS[kind].format(files=f'{noun}s')
            lines.extend(_listing(heading, problems))
    if report.young:
        lines.append('')
        lines.extend(
            _listing(
                f'Left alone (younger than --grace, {report.grace:g} s: maybe '
                'uploads in progress)',
                report.young,
            )
        )
    if report.cache:
        lines.append('')
        lines.append(report.cache)
    lines.append('')
    lines.append(_conclusion(report))
    return '\n'.join(lines) + '\n'


def _listing(heading: str, problems: list[Problem]) -> Iterator[str]:
    total = sum(problem.bytes for problem in problems)
    weight = f', {size(total)}' if total else ''
    yield f'{heading}: {len(problems)}{weight}'
    for problem in problems[:EXAMPLES]:
        outcome = f'  -> {problem.outcome}' if problem.outcome else ''
        yield f'  {problem.path}  {problem.detail}{outcome}'
    if len(problems) > EXAMPLES:
        yield f'  ... and {len(problems) - EXAMPLES} more (--json lists them all)'


def _conclusion(report: Report) -> str:
    found = report.found
    problems = _count(found, 'problem')
    if not found:
        return 'No problems found.'
    if report.refused:
        return f'{problems} found. {report.refused}'
    if not report.repair:
        missing = len(report.problems[Kind.ANIMATION])
        kept = len(report.problems[Kind.KEPT_ORIGINAL])
        damaged = sum(
            problem.role in (ORIGINAL, KEPT_ORIGINAL, ANIMATION)
            for problem in report.problems[Kind.DAMAGED]
        )
        if missing + kept + damaged == found:
            return f'{problems} found, which --repair cannot repair.'
        phrases = [
            phrase
            for count, phrase in (
                (missing, 'a missing animation'),
                (kept, 'a missing kept original'),
                (damaged, 'a damaged original or animation'),
            )
            if count
        ]
        but = f' (but not {" or ".join(phrases)})' if phrases else ''
        return f'{problems} found; nothing was changed. --repair repairs them{but}.'
    if report.remaining:
        return (
            f'Repaired {found - report.remaining} of {problems}; '
            f'{report.remaining} could not be (see above).'
        )
    return f'Repaired {problems}.'


def document(report: Report) -> dict[str, Any]:
    """What a program reads (``--json``): the report, with every problem."""
    return {
        'storage': report.storage,
        'renditions': report.renditions,
        'index': report.index,
        'repair': report.repair,
        'verify': report.verify,
        'grace': report.grace,
        'images': report.images,
        'files': report.files,
        'bytes': report.bytes,
        'problems': {
            str(kind): [problem.document() for problem in problems]
            for kind, problems in report.problems.items()
        },
        'left_alone': [problem.document() for problem in report.young],
        'refused': report.refused or None,
        'cache': report.cache or None,
        'found': report.found,
        'remaining': report.remaining,
        'status': report.status,
    }


def size(count: int) -> str:
    """A number of bytes, in decimal units as ``asgilook import`` says them."""
    if count < 1000:
        return f'{count} B'
    exponent = min(int(math.log10(count)) // 3, 4)
    return f'{count / 1000**exponent:.1f} {"kMGT"[exponent - 1]}B'


def age(seconds: float) -> str:
    """A number of seconds, in minutes under an hour, else in hours."""
    if seconds < 3600:
        return f'{max(seconds, 0) / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def _count(number: int, noun: str) -> str:
    return f'{number} {noun}' if number == 1 else f'{number} {noun}s'
