# wsecho in a container. Configure it with WSECHO_* variables (see README):
#   docker build -t wsecho .
#   docker run --rm -p 8181:8181 -e WSECHO_ALLOWED_ORIGIN=https://example.com wsecho
FROM python:3.12-slim

COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src \
    && useradd --system --no-create-home wsecho

USER wsecho
# Inside a container the service must listen on every address.
ENV WSECHO_INTERFACE=0.0.0.0 \
    WSECHO_PORT=8181
EXPOSE 8181
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8181/readyz', timeout=2)"]
CMD ["twistd", "--nodaemon", "--pidfile=", "--logger", "wsecho.logs.json", "wsecho"]
