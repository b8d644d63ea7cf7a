// The /upload page's memory across reloads: IndexedDB database "wayview-upload" with two
// stores, "batches" (one per sequence to be: its photos' keys in order, its state, the
// cluster id once finished, the server's result) and "photos" (the photo's Blob, its
// metadata and file handle). Records carry the signed-in user's id and the page only reads
// the current user's. Without IndexedDB (a private window, storage full) the same calls work
// in memory and the page says that a reload means dropping the photos again.

const DB_NAME = "wayview-upload";
const DB_VERSION = 1;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

class MemoryStore {
  constructor() {
    this.persistent = false;
    this.batches = new Map();
    this.photos = new Map();
  }

  async putBatch(batch) { this.batches.set(batch.id, { ...batch }); }
  async putPhoto(photo) { this.photos.set(photo.key, { ...photo }); }
  async putAll(batches, photos) {
    for (const p of photos) await this.putPhoto(p);
    for (const b of batches) await this.putBatch(b);
  }
  async batchesOf(userId) {
    return [...this.batches.values()].filter((b) => b.userId === userId).sort((a, b) => a.createdAt - b.createdAt);
  }
  async photo(key) { const p = this.photos.get(key); return p ? { ...p } : null; }
  async deletePhotos(keys) { for (const k of keys) this.photos.delete(k); }
  async deleteBatch(batch) {
    await this.deletePhotos(batch.photoKeys);
    this.batches.delete(batch.id);
  }
}

class IndexedStore {
  constructor(db) {
    this.db = db;
    this.persistent = true;
  }

  tx(stores, mode = "readonly") {
    return this.db.transaction(stores, mode);
  }

  done(tx) {
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
      tx.onerror = () => reject(tx.error);
    });
  }

  async putBatch(batch) {
    const tx = this.tx(["batches"], "readwrite");
    tx.objectStore("batches").put(batch);
    await this.done(tx);
  }

  async putPhoto(photo) {
    const tx = this.tx(["photos"], "readwrite");
    tx.objectStore("photos").put(photo);
    await this.done(tx);
  }

  /** New batches and their photos in one transaction: all kept, or none. */
  async putAll(batches, photos) {
    const tx = this.tx(["batches", "photos"], "readwrite");
    for (const p of photos) tx.objectStore("photos").put(p);
    for (const b of batches) tx.objectStore("batches").put(b);
    await this.done(tx);
  }

  async batchesOf(userId) {
    const all = await request(this.tx(["batches"]).objectStore("batches").getAll());
    return all.filter((b) => b.userId === userId).sort((a, b) => a.createdAt - b.createdAt);
  }

  async photo(key) {
    return (await request(this.tx(["photos"]).objectStore("photos").get(key))) || null;
  }

  async deletePhotos(keys) {
    const tx = this.tx(["photos"], "readwrite");
    for (const k of keys) tx.objectStore("photos").delete(k);
    await this.done(tx);
  }

  async deleteBatch(batch) {
    const tx = this.tx(["batches", "photos"], "readwrite");
    for (const k of batch.photoKeys) tx.objectStore("photos").delete(k);
    tx.objectStore("batches").delete(batch.id);
    await this.done(tx);
  }
}

/** The IndexedDB store, or the in-memory one when IndexedDB cannot be opened. */
export async function openStore() {
  if (!("indexedDB" in window)) return new MemoryStore();
  try {
    const open = indexedDB.open(DB_NAME, DB_VERSION);
    open.onupgradeneeded = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains("batches")) db.createObjectStore("batches", { keyPath: "id" });
      if (!db.objectStoreNames.contains("photos")) db.createObjectStore("photos", { keyPath: "key" });
    };
    return new IndexedStore(await request(open));
  } catch {
    return new MemoryStore();
  }
}

export { MemoryStore };
