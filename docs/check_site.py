"""The built site as a reader sees it: ``python docs/check_site.py docs/_build/html --out docs/_build/check``
(``make docs-check``).

1. Every in-site link to an anchor (``page.html#id``) finds that id (no browser needed).
2. Headless Chromium (Debian's ``chromium`` package; not a Python package, so ``make test`` does not run
   this) opens the index page, a tutorial and an API page at 1280 x 900 and saves a screenshot of each
   into ``--out``; it also dumps each page's DOM after its scripts ran.
3. Math is rendered: every page whose HTML holds equations (``class="math"``) must come back from the
   browser with MathJax's ``<mjx-container>`` elements and no equation left as raw LaTeX (``\\(`` ...
   ``\\)``, ``\\[`` ... ``\\]``). MathJax is bundled into the site (``sphinx-mathjax-offline``), so
   this passes without the network; a site loading MathJax from a CDN fails it offline.

Exit code 0 when all checks pass, 1 with one line per problem otherwise, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import glob
import html
import os
import re
import shutil
import subprocess
import sys

PAGES = ('index.html', 'tutorials/your_model.html', 'api/cells.html')
_MATH = re.compile(r'<(span|div) class="math[^"]*">(.*?)</\1>', re.S)


def broken_anchors(site: str) -> list[str]:
  """``page -> target#id`` for every in-site link whose id its target page lacks."""
  ids, pages = {}, sorted(glob.glob(os.path.join(site, '**', '*.html'), recursive=True))
  for page in pages:
    ids[os.path.normpath(page)] = set(re.findall(r'\bid="([^"]+)"', open(page, encoding='utf-8').read()))
  problems = []
  for page in pages:
    text = open(page, encoding='utf-8').read()
    for target, anchor in sorted(set(re.findall(r'href="([^"#:?]*\.html)?#([^"]+)"', text))):
      path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else os.path.normpath(page)
      if path in ids and html.unescape(anchor) not in ids[path] and anchor not in ids[path]:
        problems.append(f'{os.path.relpath(page, site)}: broken link to {target or ""}#{anchor}')
  return problems


def chromium() -> str | None:
  for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
    if shutil.which(name):
      return shutil.which(name)
  return None


def _browser(binary: str, url: str, *args: str) -> subprocess.CompletedProcess:
  flags = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1280,900']
  # virtual time: the page's scripts (MathJax typesetting) run to completion before the dump/screenshot.
  flags += ['--virtual-time-budget=20000', '--run-all-compositor-stages-before-draw']
  return subprocess.run([binary, *flags, *args, url], capture_output=True, text=True, timeout=180)


def unrendered_math(source: str, dom: str) -> str | None:
  """Why the math of a page (its built HTML ``source``, the browser's ``dom``) is not rendered, or None."""
  equations = _MATH.findall(source)
  if not equations:
    return None
  if '<mjx-container' not in dom:
    return f'{len(equations)} equations and no <mjx-container> in the page: MathJax did not run'
  raw = [body for _, body in _MATH.findall(dom) if re.search(r'\\[(\[]', body) and '<mjx-container' not in body]
  if raw:
    return f'{len(raw)} of {len(equations)} equations left as raw LaTeX, e.g. {html.unescape(raw[0])[:80]!r}'
  return None


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('site', help='the built site (docs/_build/html)')
  parser.add_argument('--out', default='docs/_build/check', help='where the screenshots and DOM dumps go')
  args = parser.parse_args(argv)
  problems = broken_anchors(args.site)
  binary = chromium()
  if binary is None:
    print('error: no Chromium found; install it (Debian: apt-get install chromium) to check the site', file=sys.stderr)
    return 2
  os.makedirs(args.out, exist_ok=True)
  math_pages = 0
  for page in PAGES:
    path = os.path.abspath(os.path.join(args.site, page))
    if not os.path.isfile(path):
      problems.append(f'{page}: not built')
      continue
    url, stem = 'file://' + path, page.replace('/', '_').removesuffix('.html')
    shot = os.path.join(args.out, stem + '.png')
    done = _browser(binary, url, f'--screenshot={shot}')
    if not os.path.isfile(shot):
      problems.append(f'{page}: no screenshot ({done.stderr.strip().splitlines()[-1:] or "chromium failed"})')
    dom = _browser(binary, url, '--dump-dom').stdout
    with open(os.path.join(args.out, stem + '.dom.html'), 'w', encoding='utf-8') as f:
      f.write(dom)
    source = open(path, encoding='utf-8').read()
    math_pages += bool(_MATH.search(source))
    why = unrendered_math(source, dom)
    if why:
      problems.append(f'{page}: {why}')
  if not math_pages:
    problems.append(f'none of {", ".join(PAGES)} has an equation: the math check checked nothing')
  for problem in problems:
    print(problem, file=sys.stderr)
  print(f'{len(PAGES)} pages in Chromium, {math_pages} with math; screenshots in {args.out}; {len(problems)} problems')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main())
