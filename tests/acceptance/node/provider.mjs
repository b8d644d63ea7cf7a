// Loads wayview data the way MapillaryJS 4.1 does (spec §10.3, Node level): its own
// GraphDataProvider, over an XMLHttpRequest shim built on fetch (Node has no XHR).
//
// Usage: node provider.mjs '{"endpoint": "http://…/", "token": "MLY|…", "imageId": "…",
//                            "sequenceId": "…", "lngLat": {"lng": …, "lat": …}, "z": 11}'
// Prints one JSON object: each provider call's result, or {"error": "…"} for a failed call.

class XMLHttpRequestShim {
  constructor() {
    this.status = 0;
    this.response = null;
    this.responseType = "";
    this.timeout = 0;
    this._headers = {};
    this._controller = new AbortController();
    this.onload = this.onerror = this.ontimeout = this.onabort = null;
  }

  open(method, url) {
    this._method = method;
    this._url = url;
  }

  setRequestHeader(name, value) {
    this._headers[name] = value;
  }

  abort() {
    this._controller.abort();
  }

  send(body) {
    const timer = this.timeout > 0 ? setTimeout(() => {
      this._timedOut = true;
      this._controller.abort();
    }, this.timeout) : null;
    fetch(this._url, { method: this._method, headers: this._headers, body,
                       signal: this._controller.signal })
      .then(async (res) => {
        this.status = res.status;
        const buffer = await res.arrayBuffer();
        if (this.responseType === "arraybuffer") {
          this.response = buffer;
        } else if (this.responseType === "json") {
          try {
            this.response = JSON.parse(new TextDecoder().decode(buffer));
          } catch {
            this.response = null; // what browsers give for unparsable JSON
          }
        } else {
          this.response = new TextDecoder().decode(buffer);
        }
        this.onload?.();
      })
      .catch(() => {
        if (this._timedOut) this.ontimeout?.();
        else if (this._controller.signal.aborted) this.onabort?.();
        else this.onerror?.();
      })
      .finally(() => timer && clearTimeout(timer));
  }
}
globalThis.XMLHttpRequest = XMLHttpRequestShim;

const args = JSON.parse(process.argv[2]);
const { GraphDataProvider } = await import("mapillary-js/dist/mapillary.module.js");
const provider = new GraphDataProvider({ endpoint: args.endpoint, accessToken: args.token });

async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    return { error: err?.message ?? JSON.stringify(err) };
  }
}

const out = {};
out.images = await attempt(() => provider.getImages([args.imageId]));
out.spatial = await attempt(() => provider.getSpatialImages([args.imageId]));
out.sequence = await attempt(() => provider.getSequence(args.sequenceId));
out.cellId = provider.geometry.lngLatToCellId(args.lngLat);
out.core = await attempt(() => provider.getCoreImages(out.cellId));
out.tiles = await attempt(() => provider.getImageTiles({ imageId: args.imageId, z: args.z }));
const image = out.images?.[0]?.node;
if (image?.mesh?.url) {
  out.mesh = await attempt(() => provider.getMesh(image.mesh.url));
}
if (image?.cluster?.url) {
  const cluster = await attempt(() => provider.getCluster(image.cluster.url));
  // MapillaryJS keeps the points and the reference of the first reconstruction.
  out.cluster = cluster.error ? cluster : {
    id: cluster.id, reference: cluster.reference, points: Object.keys(cluster.points ?? {}).length,
  };
}
out.missing = await attempt(() => provider.getImages(["1"]));
out.badTiles = await attempt(() => provider.getImageTiles({ imageId: args.imageId, z: 40 }));
process.stdout.write(JSON.stringify(out));
