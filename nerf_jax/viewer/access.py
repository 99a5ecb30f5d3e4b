"""Who may use the viewer: its own page, holding the secret token.

viser serves the viewer's page and its websocket on one port and, left
alone, accepts a websocket from any web page the user has open (a browser
sends the handshake whatever page asks). Through that websocket a page
could add keyframes and save camera paths, so every HTTP request and every
websocket handshake is checked here first (``Guard.refusal``):

* **The token.** ``Viewer.start`` prints the URL with a secret
  (``secrets.token_urlsafe``), as Jupyter does:
  ``http://127.0.0.1:8080/?token=...``. The page is served only to a
  request holding it (``?token=`` or the cookie below); its response sets
  the token as an ``HttpOnly``, ``SameSite=Strict`` cookie, which the
  browser sends with the page's own websocket handshake (viser's client
  drops the page's query string when it opens the websocket, so the cookie
  is what carries the token; a ``?token=`` on the websocket URL is accepted
  too, for other clients).
* **The origin.** A websocket handshake must carry an ``Origin`` header
  naming the address the request was made to (its ``Host``: the viewer's
  own page, also behind an SSH tunnel or a proxy); when the viewer listens
  on a loopback address that address must itself be a loopback name
  (``localhost``, ``127.0.0.1``, ``[::1]``), so a web site that rebinds its
  DNS name to 127.0.0.1 is refused even before the token is looked at.

How it hooks into viser (``guarding``): viser 1.x starts its server with
``websockets.asyncio.server.serve(..., process_request=viser_http_server)``,
in ``ViserServer``'s constructor. While the viewer constructs its
``ViserServer``, ``guarding`` puts a wrapper in place of that ``serve``: it
passes every argument through and wraps ``process_request`` (websockets'
documented hook, called on every request before the handshake) so
``Guard`` answers first. Only public names of websockets are involved, and
nothing of viser is patched. If a future viser starts its server some other
way, the wrapper is never called and ``Viewer.start`` stops the server and
refuses to serve, in one line, rather than serve without the check.
"""

from __future__ import annotations

import contextlib
import hmac
import http
import inspect
import ipaddress
import secrets
import sys
import threading
import time
import urllib.parse
from typing import Callable, Optional

from nerf_jax import errors

TOKEN_PARAM = 'token'
COOKIE_PREFIX = 'nerf_jax_viewer_'
REFUSED_TEXT = ('nerf_jax viewer: refused ({reason}). Open the URL printed by '
                'view.py or train.py --viewer, with its ?token=...\n')
# Seconds between two lines on stderr about refused requests.
REPORT_EVERY_S = 10.0

_PATCH_LOCK = threading.Lock()


class AccessError(errors.UserError):
  """The viewer cannot check who connects (a viser it does not know)."""


def new_token() -> str:
  """A secret for the viewer's URL (32 random bytes, URL-safe)."""
  return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
  """Whether ``host`` (a name or address, IPv6 with or without brackets)
  is this machine's loopback: localhost, 127.0.0.0/8, ::1."""
  host = (host or '').strip().strip('[]').lower()
  if host == 'localhost' or host.endswith('.localhost'):
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def page_url(host: str, port: int, token: str) -> str:
  """The URL to open: ``http://HOST:PORT/?token=TOKEN``; a wildcard host
  (0.0.0.0, ::) is shown as this machine's loopback address."""
  if host in ('', '0.0.0.0'):
    host = '127.0.0.1'
  elif host == '::':
    host = '::1'
  if ':' in host:
    host = f'[{host}]'
  return f'http://{host}:{port}/?{TOKEN_PARAM}={token}'


def _printable(text: str, limit: int = 80) -> str:
  """``text`` cut to ``limit`` characters of printable ASCII (a client's
  header goes to the terminal: no escape sequences)."""
  return ''.join(ch if ' ' <= ch <= '~' else '?' for ch in text[:limit])


def _cookies(header_values) -> dict:
  """{name: value} of ``Cookie`` header values (malformed parts ignored)."""
  cookies = {}
  for header in header_values:
    for part in header.split(';'):
      name, sep, value = part.strip().partition('=')
      if sep and name:
        cookies.setdefault(name.strip(), value.strip().strip('"'))
  return cookies


def _same(given: Optional[str], token: str) -> bool:
  """Constant-time comparison of a client's token with ours."""
  if not isinstance(given, str) or not given:
    return False
  return hmac.compare_digest(given.encode('utf-8', 'replace'),
                             token.encode('utf-8'))


class Guard:
  """The check of every request to one viewer's server.

  Args:
    host: the address the server listens on (``--host``).
    token: the secret of the printed URL (``new_token``).
  """

  def __init__(self, host: str, token: str):
    self.host, self.token = host, token
    self.loopback_only = is_loopback(host)
    self.hooked = False
    self.refused = 0
    self._last_report = -float('inf')

  def cookie_name(self, port) -> str:
    """The cookie holding the token (one per port: viewers on several
    ports of one host do not overwrite each other's)."""
    return f'{COOKIE_PREFIX}{port}'

  # -- the check -------------------------------------------------------------

  def _token_of(self, request, port) -> Optional[str]:
    query = urllib.parse.urlsplit(request.path).query
    values = urllib.parse.parse_qs(query).get(TOKEN_PARAM)
    if values:
      return values[-1]
    cookies = _cookies(request.headers.get_all('Cookie'))
    return cookies.get(self.cookie_name(port))

  def origin_problem(self, request) -> str:
    """'' or why a websocket handshake does not come from the viewer's
    own page."""
    origins = request.headers.get_all('Origin')
    hosts = request.headers.get_all('Host')
    if len(origins) != 1 or not origins[0] or len(hosts) != 1:
      return 'no single Origin header: only the viewer\'s page may connect'
    origin, host = origins[0], hosts[0].strip().lower()
    parts = urllib.parse.urlsplit(origin.strip())
    if (parts.scheme not in ('http', 'https') or not parts.netloc
        or parts.netloc.lower() != host):
      return f'origin {_printable(origin)} is not the viewer\'s page'
    if self.loopback_only and not is_loopback(parts.hostname or ''):
      return (f'origin {_printable(origin)} is not a loopback address, and '
              'the viewer serves this machine only')
    return ''

  def refusal(self, request, port=None) -> str:
    """'' if ``request`` (a websockets ``Request``) may go on, else why it
    is refused: a websocket handshake needs the viewer's origin and the
    token, any other request (the page) the token."""
    upgrade = ','.join(request.headers.get_all('Upgrade')).lower()
    if 'websocket' in upgrade:
      problem = self.origin_problem(request)
      if problem:
        return problem
    if not _same(self._token_of(request, port), self.token):
      return 'no valid token'
    return ''

  # -- the hook --------------------------------------------------------------

  def wrap(self, process_request: Optional[Callable]) -> Callable:
    """websockets' ``process_request`` hook: ``refusal`` first (403 with
    one line), then ``process_request`` (viser's page server); an answered
    page request gets the token's cookie."""
    self.hooked = True

    def guarded(connection, request):
      port = _local_port(connection)
      try:
        reason = self.refusal(request, port)
      except Exception:  # pylint: disable=broad-except
        reason = 'a malformed request'  # whatever fails to parse is refused
      if reason:
        self._report(reason)
        return connection.respond(http.HTTPStatus.FORBIDDEN,
                                  REFUSED_TEXT.format(reason=reason))
      response = (process_request(connection, request)
                  if process_request is not None else None)
      if inspect.isawaitable(response):
        async def finish(pending=response):
          return self._with_cookie(await pending, port)
        return finish()
      return self._with_cookie(response, port)

    return guarded

  def _with_cookie(self, response, port):
    if response is not None and response.status_code < 300:
      response.headers['Set-Cookie'] = (
          f'{self.cookie_name(port)}={self.token}; Path=/; HttpOnly; '
          'SameSite=Strict')
      # The URL holds the token: never send it on as a Referer.
      response.headers['Referrer-Policy'] = 'no-referrer'
      response.headers['Cache-Control'] = 'no-store'
    return response

  def _report(self, reason: str) -> None:
    """One line on stderr about refused requests, at most every
    ``REPORT_EVERY_S`` (a hostile page cannot flood the terminal)."""
    self.refused += 1
    now = time.monotonic()
    if now - self._last_report >= REPORT_EVERY_S:
      self._last_report = now
      print(f'viewer: refused a request ({reason}); '
            f'{self.refused} refused so far', file=sys.stderr, flush=True)


def _local_port(connection):
  try:
    return connection.local_address[1]
  except (AttributeError, IndexError, TypeError):
    return None


@contextlib.contextmanager
def guarding(guard: Guard):
  """While in this block, websockets servers started through
  ``websockets.asyncio.server.serve`` (viser's) get ``guard.wrap`` as their
  ``process_request``. After the block, ``guard.hooked`` says whether it
  happened (``require_hooked``)."""
  try:
    from websockets.asyncio import server as ws_server  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise AccessError(
        f'the viewer cannot check who connects: {e} (websockets changed; '
        'see nerf_jax/viewer_access.py)') from e
  original = getattr(ws_server, 'serve', None)
  if original is None:
    raise AccessError('the viewer cannot check who connects: '
                      'websockets.asyncio.server.serve is gone (see '
                      'nerf_jax/viewer_access.py)')

  def serve(*args, **kwargs):
    kwargs['process_request'] = guard.wrap(kwargs.get('process_request'))
    return original(*args, **kwargs)

  with _PATCH_LOCK:
    ws_server.serve = serve
    try:
      yield guard
    finally:
      ws_server.serve = original


def require_hooked(guard: Guard, stop: Callable[[], None]) -> None:
  """Raises AccessError (after ``stop()``, which stops the server) unless
  ``guarding`` reached the server that was started."""
  if guard.hooked:
    return
  try:
    stop()
  except Exception:  # pylint: disable=broad-except
    pass  # refusing to serve is what matters
  import viser  # pylint: disable=g-import-not-at-top
  version = getattr(viser, '__version__', '?')
  raise AccessError(
      f'viser {version} does not start its server through '
      'websockets.asyncio.server.serve, so the viewer cannot refuse other '
      'web pages; it does not serve (install the viser that '
      'requirements.txt names, or see nerf_jax/viewer_access.py)')
