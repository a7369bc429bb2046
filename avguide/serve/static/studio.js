// avguide studio: a three.js viewer of the head driven by a take's glb morph targets, in sync
// with its speech; input by text, audio upload, microphone recording, or live microphone
// streaming over /api/stream. window.studio exposes the state for tests.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const $ = (id) => document.getElementById(id);
const canvas = $('viewer');
const audio = $('audio');

// ------------------------------------------------------------------------------------ scene
const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x2a2e37);
const camera = new THREE.PerspectiveCamera(20, 1, 0.01, 10);
scene.add(new THREE.HemisphereLight(0xffffff, 0x30303c, 1.1));
const key = new THREE.DirectionalLight(0xffffff, 2.4);
key.position.set(0.5, 1.0, 1.4);
scene.add(key);
const fill = new THREE.DirectionalLight(0xffffff, 0.5);
fill.position.set(-1.0, 0.2, 0.6);
scene.add(fill);
const controls = new OrbitControls(camera, canvas);
controls.enableDamping = false;

const studio = {
  state: 'loading',   // loading | idle | busy | ready | playing | live | error
  take: null,         // the take's JSON from the API
  mesh: null,         // the head mesh (52 morph targets)
  weights: null,      // Float32Array (T * K) from the glb's morph-weight animation
  K: 52, frames: 0, fps: 30,
  pausedAt: 0,        // the time shown while the audio is paused
  shownAt: 0,         // the time the last drawn frame shows
  liveWeights: null,  // the last streamed frame
  framed: false,
};
window.studio = studio;

function setState(s) { studio.state = s; document.body.dataset.state = s; }
function status(message, error = false) {
  $('status').textContent = message;
  $('status').classList.toggle('error', error);
}

function resize() {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.floor(w * renderer.getPixelRatio()) || canvas.height !== Math.floor(h * renderer.getPixelRatio())) {
    renderer.setSize(w, h, false);
    camera.aspect = w / Math.max(h, 1);
    camera.updateProjectionMatrix();
  }
}

function frameCamera(mesh) {
  // the face: the front of the head's box, seen slightly from the subject's left
  const box = new THREE.Box3().setFromBufferAttribute(mesh.geometry.attributes.position);  // at rest
  const size = new THREE.Vector3(), centre = new THREE.Vector3();
  box.getSize(size); box.getCenter(centre);
  const target = new THREE.Vector3(centre.x, centre.y + 0.02 * size.y, centre.z + 0.15 * size.z);
  const distance = 0.7 * size.y / Math.tan(THREE.MathUtils.degToRad(camera.fov / 2));
  const dir = new THREE.Vector3(0.32, 0.06, 1).normalize();
  camera.position.copy(target).addScaledVector(dir, distance);
  controls.target.copy(target);
  controls.update();
}

// ------------------------------------------------------------------------------------ takes
const loader = new GLTFLoader();

async function loadGlb(url) {
  const gltf = await loader.loadAsync(url);
  let mesh = null;
  gltf.scene.traverse((o) => { if (o.isMesh && o.morphTargetInfluences) mesh = o; });
  if (!mesh) throw new Error('the glb has no mesh with morph targets');
  if (studio.root) {
    scene.remove(studio.root);
    studio.root.traverse((o) => { if (o.isMesh) { o.geometry.dispose(); o.material.dispose(); } });
  }
  studio.root = gltf.scene;
  studio.mesh = mesh;
  scene.add(gltf.scene);
  const track = (gltf.animations[0]?.tracks || []).find((t) => t.name.endsWith('morphTargetInfluences'));
  studio.K = mesh.morphTargetInfluences.length;
  studio.weights = track ? track.values : null;
  studio.frames = studio.weights ? studio.weights.length / studio.K : 0;
  if (!studio.framed) { frameCamera(mesh); studio.framed = true; }
}

// Morph weights at time t (s): linear between frames, as the glb's LINEAR sampler plays them.
function apply(t) {
  const inf = studio.mesh?.morphTargetInfluences;
  if (!inf) return;
  if (studio.liveWeights) {
    for (let k = 0; k < studio.K; k++) inf[k] = studio.liveWeights[k] || 0;
    return;
  }
  if (!studio.weights || studio.frames < 1) { inf.fill(0); return; }
  const K = studio.K, w = studio.weights;
  const f = Math.min(Math.max(t * studio.fps, 0), studio.frames - 1);
  const i0 = Math.floor(f), i1 = Math.min(i0 + 1, studio.frames - 1), a = f - i0;
  for (let k = 0; k < K; k++) inf[k] = w[i0 * K + k] * (1 - a) + w[i1 * K + k] * a;
}

function now() { return audio.paused ? studio.pausedAt : audio.currentTime; }
function duration() { return studio.take ? studio.take.seconds : 0; }

function render() {
  resize();
  const t = now();
  apply(t);
  studio.shownAt = t;
  if (studio.take && !studio.liveWeights) {
    $('scrub').value = String(duration() ? t / duration() : 0);
    $('clock').textContent = `${t.toFixed(2)} s`;
  }
  renderer.render(scene, camera);
}
renderer.setAnimationLoop(render);

function setDownloads(take) {
  const names = { mp4: 'mp4', glb: 'glb', csv: 'csv', wav: 'wav' };  // the ARKit JSON is in take.files too
  for (const [fmt, ext] of Object.entries(names)) {
    const a = $(`dl-${fmt}`);
    if (take) {
      a.href = take.files[fmt];
      a.download = `avguide-${take.id.slice(0, 6)}.${ext}`;
      a.classList.remove('disabled');
    } else {
      a.removeAttribute('href');
      a.classList.add('disabled');
    }
  }
}

async function showTake(take) {
  status('Loading the take…');
  await loadGlb(take.files.glb);
  studio.take = take;
  studio.fps = take.fps;
  studio.pausedAt = 0;
  audio.src = take.files.wav;
  setDownloads(take);
  $('take-info').textContent = `${take.frames} frames at ${take.fps} fps, ${take.seconds.toFixed(2)} s, ` +
    `${take.subject}'s style; ARKit fit ${take.arkit_rms_mm.toFixed(2)} mm RMS`;
  $('play').disabled = false;
  $('scrub').disabled = false;
  setState('ready');
  status(`“${take.title}”`);
  play().catch(() => {});  // autoplay may be refused until the page is clicked
}

async function play() {
  if (!studio.take) return;
  if (studio.pausedAt >= duration() - 0.01) studio.pausedAt = 0;
  audio.currentTime = studio.pausedAt;
  await audio.play();
}

audio.addEventListener('play', () => { setState('playing'); $('play').textContent = 'Pause'; });
audio.addEventListener('pause', () => {
  studio.pausedAt = audio.currentTime;
  if (studio.state === 'playing') setState('ready');
  $('play').textContent = 'Play';
});
audio.addEventListener('ended', () => { studio.pausedAt = duration(); });

$('play').addEventListener('click', () => { if (audio.paused) play().catch((e) => status(e.message, true)); else audio.pause(); });
$('scrub').addEventListener('input', () => { studio.seek(Number($('scrub').value) * duration()); });

// Show the take at time t (s), paused: for scrubbing, and for tests.
studio.seek = (t) => {
  audio.pause();
  studio.pausedAt = Math.min(Math.max(t, 0), duration());
  try { audio.currentTime = studio.pausedAt; } catch (e) { /* not loaded yet */ }
  render();
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve(studio.pausedAt))));
};

// Page coordinates (CSS px) of head points [[x, y, z], ...] in metres, for tests.
studio.project = (points) => {
  const rect = canvas.getBoundingClientRect();
  return points.map(([x, y, z]) => {
    const p = new THREE.Vector3(x, y, z).project(camera);
    return [rect.left + (p.x + 1) / 2 * rect.width, rect.top + (1 - p.y) / 2 * rect.height];
  });
};

// ------------------------------------------------------------------------------------ API
async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function subject() { return $('subject').value || null; }

async function run(what, task) {
  setState('busy');
  status(what);
  for (const b of ['say', 'upload', 'record']) $(b).disabled = true;
  try {
    await showTake(await task());
  } catch (e) {
    setState(studio.take ? 'ready' : 'idle');
    status(e.message, true);
  } finally {
    for (const b of ['say', 'upload', 'record']) $(b).disabled = false;
  }
}

$('say-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value;
  run('Speaking and animating…', () => api('/api/say', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text, subject: subject(), voice: $('voice').value || null }),
  }));
});

// Any audio the browser decodes -> 16 kHz mono 16-bit wav (smaller, and one format for the
// server); what the browser cannot decode is sent as it is and the server says what is wrong.
async function toWav16k(blob) {
  const ctx = new AudioContext();
  let decoded;
  try { decoded = await ctx.decodeAudioData(await blob.arrayBuffer()); } finally { ctx.close(); }
  const n = Math.max(1, Math.ceil(decoded.duration * 16000));
  const offline = new OfflineAudioContext(1, n, 16000);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const samples = (await offline.startRendering()).getChannelData(0);
  const out = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); out.setUint32(4, 36 + 2 * samples.length, true); text(8, 'WAVEfmt ');
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, 16000, true); out.setUint32(28, 32000, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, 'data'); out.setUint32(40, 2 * samples.length, true);
  for (let i = 0; i < samples.length; i++) {
    out.setInt16(44 + 2 * i, Math.round(Math.max(-1, Math.min(1, samples[i])) * 32767), true);
  }
  return new Blob([out.buffer], { type: 'audio/wav' });
}

async function upload(blob, name) {
  let body = blob;
  try { body = await toWav16k(blob); } catch (e) { /* the server decides */ }
  const q = new URLSearchParams({ name });
  if (subject()) q.set('subject', subject());
  return api(`/api/animate?${q}`, {
    method: 'POST', headers: { 'Content-Type': body.type || 'application/octet-stream' }, body,
  });
}

$('upload-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const file = $('file').files[0];
  if (!file) { status('Choose an audio file first.', true); return; }
  run(`Animating ${file.name}…`, () => upload(file, file.name));
});

let recorder = null;
$('record').addEventListener('click', async () => {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) {
    status(`No microphone: ${e.message}`, true); return;
  }
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    const blob = new Blob(parts, { type: recorder.mimeType });
    recorder = null;
    $('record').textContent = 'Record';
    $('record').classList.remove('on');
    run('Animating the recording…', () => upload(blob, 'microphone'));
  };
  recorder.start();
  $('record').textContent = 'Stop';
  $('record').classList.add('on');
  setState('recording');
  status('Recording… press Stop when done.');
});

// ------------------------------------------------------------------------------------ live
let live = null;
async function startLive() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const ctx = new AudioContext({ sampleRate: 16000 });
  await ctx.audioWorklet.addModule('/static/pcm-worklet.js');
  const node = new AudioWorkletNode(ctx, 'pcm-s16le');
  ctx.createMediaStreamSource(stream).connect(node);
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/stream`);
  ws.binaryType = 'arraybuffer';
  let ready = false;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'start', sample_rate: 16000, encoding: 'pcm_s16le', subject: subject() }));
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === 'ready') { ready = true; status(`Live: speak (look-ahead ${(1000 * msg.lookahead_s).toFixed(0)} ms).`); }
    else if (msg.type === 'frames') { studio.liveWeights = msg.weights[msg.weights.length - 1]; $('clock').textContent = `${msg.audio_s.toFixed(2)} s`; }
    else if (msg.type === 'error') status(msg.message, true);
  };
  ws.onclose = () => { if (live) stopLive(); };
  node.port.onmessage = (e) => { if (ready && ws.readyState === WebSocket.OPEN) ws.send(e.data); };
  live = { stream, ctx, ws };
  audio.pause();
  studio.liveWeights = new Array(studio.K).fill(0);
  setState('live');
  $('live').textContent = 'Stop live';
  $('live').classList.add('on');
}

function stopLive() {
  const l = live;
  live = null;
  l.stream.getTracks().forEach((t) => t.stop());
  l.ctx.close();
  if (l.ws.readyState === WebSocket.OPEN) l.ws.send(JSON.stringify({ type: 'finish' }));
  studio.liveWeights = null;
  setState(studio.take ? 'ready' : 'idle');
  $('live').textContent = 'Live';
  $('live').classList.remove('on');
  status('Live stream ended.');
}

$('live').addEventListener('click', () => {
  if (live) stopLive();
  else startLive().catch((e) => { status(`Live: ${e.message}`, true); });
});

// ------------------------------------------------------------------------------------ start
(async () => {
  try {
    const info = await api('/api/info');
    for (const s of info.subjects) $('subject').add(new Option(s, s));
    for (const v of info.voices) $('voice').add(new Option(v, v));
    $('live').disabled = !info.streaming;
    $('subject').addEventListener('change', () => { if (!studio.take) loadGlb(`/api/head.glb?subject=${encodeURIComponent(subject())}`); });
    await loadGlb('/api/head.glb');
    setState('idle');
    status('Type a sentence and press Say, upload speech, or record yourself.');
  } catch (e) {
    setState('error');
    status(`Could not load the studio: ${e.message}`, true);
  }
})();
