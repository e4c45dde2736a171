# Sourced by scripts/test: programs some tests drive for real (nginx in front of an app,
# a headless Chromium opening the report), installed with apt-get where that is possible
# (Debian or Ubuntu, as root). Elsewhere those tests are skipped, saying what to install;
# CI makes them fail instead (WIDE_LOGGING_TEST_REQUIRE in .ci/run).
# Arguments: program:package pairs (the package apt-get installs the program from).
missing=()
for pair in "$@"; do
    program="${pair%%:*}"
    command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (apt-get) for the tests that drive them" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; } ||
        echo "could not install ${missing[*]}: the tests that need them will say so" >&2
fi
