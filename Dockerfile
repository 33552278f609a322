# One image for every service; SERVICES picks what a container runs.
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev --allow-scripts=node,esbuild
COPY bin ./bin
COPY contracts ./contracts
COPY mixins ./mixins
COPY infra ./infra
COPY migrations ./migrations
COPY sagas ./sagas
COPY services ./services
COPY moleculer.config.ts tsconfig.json ./
USER node
EXPOSE 3000
CMD ["npx", "tsx", "bin/start.ts"]
