// The before/after viewer: two images stacked, the right one shown right of a divider
// the user drags; one zoom (fit or 100-800%) and one pan for both, so they stay aligned.
// Images of different sizes (an input and its upscaled result) are drawn at the size
// of the larger one.

const ZOOMS = [1, 2, 4, 8];

export class Viewer {
  constructor(root) {
    this.root = root;
    this.imgs = { left: root.querySelector("#img-left"), right: root.querySelector("#img-right") };
    this.tags = { left: root.querySelector("#tag-left"), right: root.querySelector("#tag-right") };
    this.rightLayer = root.querySelector("#layer-right");
    this.divider = root.querySelector("#divider");
    this.empty = root.querySelector("#empty");
    this.split = 0.5; // divider position, fraction of the viewer's width
    this.zoom = "fit"; // "fit" or image pixels per screen pixel
    this.pan = { x: 0, y: 0 }; // screen position of the image's top-left corner
    this.size = { w: 0, h: 0 }; // drawn size in image pixels (the larger image)
    this.onZoom = () => {};
    this.bind();
    new ResizeObserver(() => this.layout()).observe(root);
  }

  // Show `url` (an object URL) on `side` ("left" or "right"), or nothing for null.
  show(side, url, label) {
    const img = this.imgs[side];
    this.tags[side].textContent = label || "";
    if (!url) {
      img.removeAttribute("src");
      img.hidden = true;
      this.measure();
      return Promise.resolve();
    }
    img.hidden = false;
    if (img.getAttribute("src") === url) return Promise.resolve();
    return new Promise((resolve) => {
      img.onload = () => { this.measure(); resolve(); };
      img.onerror = () => resolve();
      img.src = url;
    });
  }

  measure() {
    const shown = Object.values(this.imgs).filter((i) => !i.hidden && i.naturalWidth);
    const w = Math.max(0, ...shown.map((i) => i.naturalWidth));
    const h = Math.max(0, ...shown.map((i) => i.naturalHeight));
    const changed = w !== this.size.w || h !== this.size.h;
    this.size = { w, h };
    this.empty.hidden = w > 0;
    if (changed) this.center();
    this.layout();
  }

  scale() {
    if (this.zoom !== "fit") return this.zoom;
    const box = this.root.getBoundingClientRect();
    if (!this.size.w) return 1;
    return Math.min(box.width / this.size.w, box.height / this.size.h, 8);
  }

  setZoom(zoom, anchor) {
    const box = this.root.getBoundingClientRect();
    const at = anchor || { x: box.width / 2, y: box.height / 2 };
    const before = this.scale();
    this.zoom = zoom;
    const after = this.scale();
    // keep the image point under the anchor where it is
    this.pan.x = at.x - ((at.x - this.pan.x) * after) / before;
    this.pan.y = at.y - ((at.y - this.pan.y) * after) / before;
    if (zoom === "fit") this.center();
    this.layout();
    this.onZoom(zoom);
  }

  center() {
    const box = this.root.getBoundingClientRect();
    const s = this.scale();
    this.pan = { x: (box.width - this.size.w * s) / 2, y: (box.height - this.size.h * s) / 2 };
  }

  clampPan() {
    const box = this.root.getBoundingClientRect();
    const s = this.scale();
    for (const [axis, span, extent] of [["x", box.width, this.size.w * s], ["y", box.height, this.size.h * s]]) {
      if (extent <= span) this.pan[axis] = (span - extent) / 2;
      else this.pan[axis] = Math.min(0, Math.max(span - extent, this.pan[axis]));
    }
  }

  layout() {
    if (this.zoom === "fit") this.center();
    this.clampPan();
    const s = this.scale();
    for (const img of Object.values(this.imgs)) {
      if (img.hidden || !img.naturalWidth) continue;
      const k = (s * this.size.w) / img.naturalWidth; // draw at the larger image's size
      img.style.width = `${img.naturalWidth}px`;
      img.style.height = `${img.naturalHeight}px`;
      img.style.transform = `translate(${this.pan.x}px, ${this.pan.y}px) scale(${k})`;
      img.classList.toggle("pixelated", k >= 2);
    }
    const width = this.root.getBoundingClientRect().width;
    const x = Math.round(this.split * width);
    this.rightLayer.style.clipPath = `inset(0 0 0 ${x}px)`;
    this.divider.style.left = `${x}px`;
    this.divider.setAttribute("aria-valuenow", String(Math.round(this.split * 100)));
    this.root.dataset.split = this.split.toFixed(3);
    this.root.dataset.zoom = String(this.zoom);
  }

  bind() {
    let drag = null;
    const point = (e) => {
      const box = this.root.getBoundingClientRect();
      return { x: e.clientX - box.left, y: e.clientY - box.top, width: box.width };
    };
    this.divider.addEventListener("pointerdown", (e) => {
      drag = { kind: "divider" };
      this.divider.setPointerCapture(e.pointerId);
      e.preventDefault();
      e.stopPropagation();
    });
    this.root.addEventListener("pointerdown", (e) => {
      if (drag) return;
      const p = point(e);
      drag = { kind: "pan", x: p.x, y: p.y, pan: { ...this.pan } };
      this.root.setPointerCapture(e.pointerId);
      this.root.classList.add("panning");
    });
    const move = (e) => {
      if (!drag) return;
      const p = point(e);
      if (drag.kind === "divider") {
        this.split = Math.min(1, Math.max(0, p.x / p.width));
      } else {
        this.pan = { x: drag.pan.x + p.x - drag.x, y: drag.pan.y + p.y - drag.y };
      }
      this.layout();
    };
    const end = () => { drag = null; this.root.classList.remove("panning"); };
    for (const el of [this.root, this.divider]) {
      el.addEventListener("pointermove", move);
      el.addEventListener("pointerup", end);
      el.addEventListener("pointercancel", end);
    }
    this.divider.addEventListener("keydown", (e) => {
      const step = e.shiftKey ? 0.1 : 0.02;
      if (e.key === "ArrowLeft") this.split = Math.max(0, this.split - step);
      else if (e.key === "ArrowRight") this.split = Math.min(1, this.split + step);
      else return;
      e.preventDefault();
      this.layout();
    });
    this.root.addEventListener("wheel", (e) => {
      if (!this.size.w) return;
      e.preventDefault();
      const current = this.scale();
      const next = e.deltaY < 0 ? ZOOMS.find((z) => z > current + 1e-6) : [...ZOOMS].reverse().find((z) => z < current - 1e-6);
      const p = point(e);
      if (next) this.setZoom(next, p);
      else if (e.deltaY > 0) this.setZoom("fit", p);
    }, { passive: false });
  }
}
