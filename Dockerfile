# session-gateway: Clerk authentication in front of any web app.
# Build: docker build -t session-gateway .
# Run:   docker run -p 8080:8080 -e CLERK_PUBLISHABLE_KEY=... -e CLERK_SECRET_KEY=... \
#          -e GATEWAY_UPSTREAM=http://app:3000 session-gateway

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN python -m venv /opt/gateway \
    && /opt/gateway/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="session-gateway" \
      org.opencontainers.image.description="Clerk authentication at the edge, in front of any web app"
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
ENV PATH="/opt/gateway/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    GATEWAY_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/__gateway/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
