#!/usr/bin/env bash
# Make sure the system parts the tests use exist, and start a throwaway PostgreSQL.
# Sourced by scripts/test.sh; prints the URL it exports as MEDLENS_TEST_PG_URL.
set -euo pipefail

PG_PORT="${MEDLENS_TEST_PG_PORT:-55432}"
PG_DIR="${MEDLENS_TEST_PG_DIR:-/tmp/medlens-test-pg}"
stop_services() { :; }  # replaced below when this script starts PostgreSQL itself

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# The PACS the hospital-integration tests run privately (tests/integrations/conftest.py).
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
[ -f /usr/share/orthanc/plugins/libOrthancGdcm.so ] || need+=(orthanc-gdcm)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "services: installing ${need[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "services: please install ${need[*]} (sudo apt-get install ${need[*]})" >&2
  fi
fi

# The packaged Orthanc service (ports 8042/4242, listening on every interface, open to
# any C-STORE) is never what the tests use: stop it where systemd started it.
if [ "$(id -u)" = 0 ] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-active --quiet orthanc 2>/dev/null; then
  systemctl stop orthanc && systemctl disable --quiet orthanc 2>/dev/null || true
  echo "services: stopped the packaged orthanc service (tests start a private one)"
elif [ "$(id -u)" = 0 ] && [ -x /etc/init.d/orthanc ] && /etc/init.d/orthanc status >/dev/null 2>&1; then
  /etc/init.d/orthanc stop >/dev/null 2>&1 || true
  echo "services: stopped the packaged orthanc service (tests start a private one)"
fi

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    rm -rf "$PG_DIR"; mkdir -p "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    # Started here, so stopped by whoever sourced this (scripts/test.sh) when it is done.
    stop_services() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; }
  fi
  export MEDLENS_TEST_PG_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"
  echo "services: PostgreSQL at $MEDLENS_TEST_PG_URL"
fi
if command -v chromium >/dev/null 2>&1; then
  export MEDLENS_CHROMIUM="$(command -v chromium)"
fi

# The real OpenID provider (npm oidc-provider) the single sign-on tests start: installed
# from tests/sso/package-lock.json, once per lock file (npm keeps its download cache).
if command -v npm >/dev/null 2>&1; then
  sso_stamp="tests/sso/node_modules/.installed-$(sha256sum tests/sso/package-lock.json | cut -c1-12)"
  if [ ! -f "$sso_stamp" ]; then
    if (cd tests/sso && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      touch "$sso_stamp"; echo "services: oidc-provider installed in tests/sso"
    else
      echo "services: npm ci in tests/sso failed; the SSO tests will fail under MEDLENS_CI" >&2
    fi
  fi
  # The in-memory FHIR R4 server (npm @medplum/fhir-router) of the FHIR round-trip test.
  fhir_stamp="tests/fhir/node_modules/.installed-$(sha256sum tests/fhir/package-lock.json | cut -c1-12)"
  if [ ! -f "$fhir_stamp" ]; then
    if (cd tests/fhir && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      touch "$fhir_stamp"; echo "services: @medplum/fhir-router installed in tests/fhir"
    else
      echo "services: npm ci in tests/fhir failed; the FHIR round trip will fail under MEDLENS_CI" >&2
    fi
  fi
else
  echo "services: Node.js/npm not found; the single sign-on tests need them" >&2
fi
