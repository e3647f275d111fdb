# The service itself. It needs the Docker socket and the storage folder (see docker-compose.yml).
FROM node:20-bookworm-slim
# iptables: for PREVIEW_HOST_FIREWALL=iptables (the host rule on the preview bridge, README "Security").
RUN apt-get update && apt-get install -y --no-install-recommends iptables && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/previews
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
ENV NODE_ENV=production
EXPOSE 3000
CMD ["npm", "start"]
