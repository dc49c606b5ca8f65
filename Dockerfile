# tether's image: one image for every process; the command chooses which one
#   node --import tsx workers/api-server.ts      (default)
#   node --import tsx workers/control-plane.ts
#   node --import tsx workers/compute-agent.ts
# docker-compose.yml sets it per service. No build step: tsx runs the TypeScript as it is.
#
# Without a registry (docs/production.md#the-compose-file-without-a-registry), two build options
# replace what is pulled: --build-arg NODE_IMAGE=<a local image with Node 20 at /usr/local/bin/node>
# and --build-context dependencies=<DIR> (DIR/app/node_modules installed elsewhere with
# `npm ci --omit=dev`; it replaces the stage below, so the build installs nothing from npm).
ARG NODE_IMAGE=node:20-bookworm-slim

# Production dependencies. tsx (which runs the processes) is in "dependencies", so --omit=dev
# keeps it and leaves out vitest, typescript, vite. This stage is rebuilt only when package*.json change.
FROM ${NODE_IMAGE} AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM ${NODE_IMAGE}

# libvirt0: the C library that tether's libvirt binding (koffi) loads in the compute agent.
# qemu-utils: qemu-img, with which the embedded volume service creates volume files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt0 qemu-utils \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user for the API and the control plane (the compute agent runs as root: it talks
# to the host's libvirt socket; docker-compose.yml says `user: root` for it alone).
RUN groupadd --system --gid 10001 tether \
 && useradd --system --uid 10001 --gid tether --create-home --home-dir /home/tether --shell /usr/sbin/nologin tether

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so this layer is reused until package*.json change.
COPY --from=dependencies /app/node_modules ./node_modules

# The source (see .dockerignore), owned by root: the processes cannot change their own code.
COPY . .
COPY deploy/docker-entrypoint.sh /usr/local/bin/tether-entrypoint
# The `tether` CLI compiled to JavaScript (dist/cli, owned by root like the source: bin/tether.js
# loads it as long as no source changed; otherwise it runs the source through tsx).
RUN node scripts/build-cli.js

USER tether
EXPOSE 8774
ENTRYPOINT ["tether-entrypoint"]
CMD ["node", "--import", "tsx", "workers/api-server.ts"]
