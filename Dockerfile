# syntax=docker/dockerfile:1
# gpud for GPU nodes (default) or CPU-only machines:
#   docker build -t gpud:cuda .
#   docker build --build-arg BACKEND=cpu -t gpud:cpu .
#   docker run --gpus all -p 8080:8080 -e Gpud__ApiKeys__0=sk-... -v gpud-data:/var/lib/gpud -v /srv/models:/models:ro gpud:cuda
# Configuration is environment only (Gpud__Section__Key=value); see README "Configuration".

# "cuda" publishes TorchSharp-cuda-linux (libtorch with CUDA, cuDNN and cuBLAS inside); "cpu" libtorch-cpu.
ARG BACKEND=cuda

FROM mcr.microsoft.com/dotnet/sdk:10.0-noble AS build
ARG BACKEND
WORKDIR /src
# Restore in its own layer: it is redone only when a project file or the build settings change.
COPY global.json gpud.sln Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
COPY src/Gpud/Gpud.csproj src/Gpud/
COPY src/Gpud.Engine/Gpud.Engine.csproj src/Gpud.Engine/
COPY src/Gpud.Services/Gpud.Services.csproj src/Gpud.Services/
COPY src/Gpud.Storage/Gpud.Storage.csproj src/Gpud.Storage/
RUN dotnet restore src/Gpud/Gpud.csproj -r linux-x64 -p:TorchBackend=${BACKEND}
COPY src/ src/
RUN dotnet publish src/Gpud/Gpud.csproj -c Release -r linux-x64 --self-contained --no-restore \
      -p:TorchBackend=${BACKEND} -o /app \
 && rm -rf /app/runtimes/win-* /app/runtimes/osx-*

# Ubuntu 24.04: its libstdc++ has GLIBCXX_3.4.32, which libLibTorchSharp.so 0.107 asks for.
FROM ubuntu:24.04 AS runtime
# libgomp1: libtorch's OpenMP; curl: the health check; tzdata and ICU are not needed (invariant culture, UTC logs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/gpud --shell /usr/sbin/nologin gpud \
 && install -d -o gpud -g gpud -m 0750 /var/lib/gpud
COPY --from=build /app /opt/gpud

ENV Gpud__DataDir=/var/lib/gpud \
    DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    Logging__Console__FormatterName=json \
    Logging__Console__FormatterOptions__UseUtcTimestamp=true \
    Logging__Console__FormatterOptions__TimestampFormat=yyyy-MM-ddTHH:mm:ss.fffZ \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID

USER gpud
WORKDIR /var/lib/gpud
VOLUME ["/var/lib/gpud"]
EXPOSE 8080
# Ready = libtorch loaded, the database open, enough free disk (GET /readyz); the first start also loads libtorch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/readyz"]
# SIGTERM lets running jobs finish their step and checkpoint: give `docker stop` -t 120.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/gpud/gpud", "--urls=http://0.0.0.0:8080"]
