// ckanops notice script (GET /-/ckanops/notice.js).
//
// The gate puts this script on the pages it annotates: right after the
// banner, as <script src=".../-/ckanops/notice.js" defer
// data-ckanops-poll="SECONDS">. It polls the gate's public status (the
// same directory's "status") and tells the open page when a maintenance
// starts, overruns or ends, so that nobody types for ten minutes into a
// form the site will refuse:
//
//   - when the site leaves live, a banner goes at the top of the body (in
//     place of the announce banner), and every submit button of a form
//     marked data-ckanops-write (and every button so marked elsewhere) is
//     disabled, with a note before it; the other marked controls (htmx
//     links, CKAN's confirm-action links) stop answering clicks. What the
//     reader typed is never touched.
//   - when it is live again, all of that is undone: exactly the buttons
//     this script disabled are enabled again. On a page the gate annotated
//     in maintenance (its forms replaced by notices), the banner becomes a
//     note that asks for a reload, and the buttons the gate disabled are
//     enabled again.
//
// Plain ES2017, no dependencies. It builds its elements with
// createElement and textContent (never innerHTML) and styles them through
// element.style, so a Content-Security-Policy of script-src 'self' and a
// style-src without 'unsafe-inline' does not stop it.
(function () {
  'use strict';

  var SCRIPT_PATH = '/-/ckanops/notice.js';
  var WRITE = 'data-ckanops-write';
  var NOTE_TEXT = 'Saving is paused for maintenance. Nothing you typed is lost: keep this page open and save once the site is back.';
  var MAX_DELAY = 5 * 60 * 1000;

  var me = document.currentScript ||
    document.querySelector('script[src$="' + SCRIPT_PATH + '"]');
  if (!me || !me.src || typeof fetch !== 'function') {
    return;
  }

  // One instance per page: a page whose body is swapped in (htmx's boost)
  // brings its own script, which takes over from the last one.
  if (window.__ckanopsNotice && typeof window.__ckanopsNotice.stop === 'function') {
    window.__ckanopsNotice.stop();
  }
  var stopped = false;
  var timer = 0;
  window.__ckanopsNotice = {
    stop: function () {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisibility);
      window.removeEventListener('pageshow', onPageShow);
      window.removeEventListener('click', onClick, true);
      window.removeEventListener('submit', onSubmit, true);
    }
  };

  var statusURL = (function () {
    var u = new URL(me.src, document.baseURI);
    u.pathname = u.pathname.replace(/notice\.js$/, 'status');
    u.search = '';
    u.hash = '';
    return u.href;
  })();

  var poll = parseFloat(me.getAttribute('data-ckanops-poll'));
  if (!isFinite(poll)) {
    poll = 30;
  }
  poll = Math.max(1, poll) * 1000;

  // What the page said when it was loaded: "announce", "read-only",
  // "down", or live (no banner).
  var first = document.querySelector('.ckanops-banner');
  var pageMode = first ? first.getAttribute('data-ckanops-mode') || '' : 'live';
  var serverMaint = pageMode === 'read-only' || pageMode === 'down';

  // The state this script put the page in.
  var maint = serverMaint; // the page shows a maintenance
  var bannerKey = null; // what the banner shown says (null: the server's, unchecked)
  var disabled = []; // buttons this script disabled
  var notes = []; // notes this script added
  var blocked = []; // [element, aria-disabled, pointer-events, opacity] of controls it turned off
  var revived = []; // buttons the server disabled and this script enabled
  var eta = null; // the banner's relative time, updated at each poll

  var bannerStyle = {
    'box-sizing': 'border-box', margin: '0', padding: '10px 16px',
    background: '#fff3cd', color: '#3d2f00', 'border-bottom': '2px solid #d9a400',
    font: "15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif", 'text-align': 'center'
  };
  var liveStyle = {
    background: '#e6f4ea', color: '#0d3b1e', 'border-bottom': '2px solid #3c9a5f'
  };
  var noteStyle = {
    display: 'block', 'box-sizing': 'border-box', margin: '.5em 0', padding: '6px 10px',
    background: '#fff3cd', color: '#3d2f00', border: '1px solid #d9a400', 'border-radius': '4px',
    font: "14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif"
  };

  function css(el, style) {
    for (var k in style) {
      if (Object.prototype.hasOwnProperty.call(style, k)) {
        el.style.setProperty(k, style[k]);
      }
    }
  }

  function el(tag, text) {
    var e = document.createElement(tag);
    if (text) {
      e.textContent = text;
    }
    return e;
  }

  // human says how far away a time is, as the gate's banner does.
  function human(ms) {
    if (!(ms > 0)) {
      return 'shortly';
    }
    if (ms < 60000) {
      return 'in under a minute';
    }
    var mins = Math.ceil(ms / 60000);
    var d = Math.floor(mins / 1440), h = Math.floor(mins / 60) % 24, m = mins % 60;
    var s = 'in ';
    if (d > 0) {
      return s + d + 'd' + (h > 0 ? h + 'h' : '');
    }
    return s + (h > 0 ? h + 'h' : '') + (m > 0 ? m + 'm' : '');
  }

  function currentBanner() {
    return document.querySelector('.ckanops-banner');
  }

  function putBanner(b) {
    var old = currentBanner();
    if (old && old.parentNode) {
      old.parentNode.replaceChild(b, old);
    } else if (document.body) {
      document.body.insertBefore(b, document.body.firstChild);
    }
  }

  function removeBanner() {
    var old = currentBanner();
    if (old && old.parentNode) {
      old.parentNode.removeChild(old);
    }
  }

  function isText(s) {
    return typeof s === 'string' && s.trim() !== '';
  }

  function showBanner(st) {
    var b = el('div');
    b.className = 'ckanops-banner';
    b.setAttribute('role', 'status');
    b.setAttribute('data-ckanops-mode', st.mode);
    css(b, bannerStyle);
    if (st.mode === 'down') {
      b.appendChild(el('strong', 'This site is down for maintenance.'));
    } else {
      b.appendChild(el('strong', 'This site is in read-only mode for maintenance.'));
      b.appendChild(document.createTextNode(' You can browse and download data, but changes cannot be saved right now.'));
    }
    if (isText(st.message)) {
      b.appendChild(document.createTextNode(' '));
      var msg = el('span', st.message);
      msg.className = 'ckanops-message';
      msg.style.setProperty('white-space', 'pre-line');
      b.appendChild(msg);
    }
    eta = null;
    var until = typeof st.until === 'string' ? new Date(st.until) : null;
    if (until && !isNaN(until.getTime())) {
      var span = el('span');
      span.className = 'ckanops-eta';
      span.appendChild(document.createTextNode('Expected back '));
      var t = el('time', until.toLocaleString());
      t.setAttribute('datetime', st.until);
      span.appendChild(t);
      if (st.overrun) {
        span.appendChild(document.createTextNode(' \u2014 the work is taking longer than planned.'));
      } else {
        eta = document.createTextNode('');
        eta.ckanopsUntil = until.getTime();
        span.appendChild(document.createTextNode(' ('));
        span.appendChild(eta);
        span.appendChild(document.createTextNode(').'));
      }
      b.appendChild(document.createTextNode(' '));
      b.appendChild(span);
    } else if (st.overrun) {
      var o = el('span', 'The work is taking longer than planned.');
      o.className = 'ckanops-eta';
      b.appendChild(document.createTextNode(' '));
      b.appendChild(o);
    }
    updateETA();
    putBanner(b);
  }

  function updateETA() {
    if (eta) {
      eta.textContent = human(eta.ckanopsUntil - Date.now());
    }
  }

  // What the page is: the gate's refusal of a GET or of a POST (the
  // script tag's data-ckanops-refused), or a page of the site ("").
  var refused = me.getAttribute('data-ckanops-refused') || '';

  function showOver() {
    var b = el('div');
    b.className = 'ckanops-banner';
    b.setAttribute('role', 'status');
    b.setAttribute('data-ckanops-mode', 'live');
    css(b, bannerStyle);
    css(b, liveStyle);
    b.appendChild(el('strong', 'Maintenance is over:'));
    b.appendChild(document.createTextNode(' '));
    var a;
    if (refused === 'post' && history.length > 1) {
      // Reloading would send the form again without the reader seeing it.
      a = el('a', 'go back to the form');
      a.href = document.referrer || location.href;
      a.addEventListener('click', function (e) {
        e.preventDefault();
        history.back();
      });
      b.appendChild(a);
      b.appendChild(document.createTextNode(' and send it again.'));
    } else {
      a = el('a', 'reload the page');
      a.href = location.href;
      a.addEventListener('click', function (e) {
        e.preventDefault();
        location.reload();
      });
      b.appendChild(a);
      b.appendChild(document.createTextNode(refused ? '.' : ' to edit.'));
    }
    putBanner(b);
  }

  function isSubmit(e) {
    if (e.tagName === 'BUTTON') {
      return e.type === 'submit';
    }
    return e.tagName === 'INPUT' && (e.type === 'submit' || e.type === 'image');
  }

  // writeButtons are the buttons to disable: the submit buttons of the
  // marked forms (a button's form, whether it is inside it or names it),
  // the marked buttons, and the buttons the server had disabled.
  function writeButtons() {
    var out = [];
    var all = document.querySelectorAll('button, input');
    for (var i = 0; i < all.length; i++) {
      var e = all[i];
      if (e.hasAttribute(WRITE) || isSubmit(e) && e.form && e.form.hasAttribute(WRITE)) {
        out.push(e);
      }
    }
    for (var j = 0; j < revived.length; j++) {
      if (out.indexOf(revived[j]) < 0 && revived[j].isConnected) {
        out.push(revived[j]);
      }
    }
    return out;
  }

  function addNote(before) {
    var n = el('span', NOTE_TEXT);
    n.className = 'ckanops-submit-notice';
    n.setAttribute('role', 'note');
    css(n, noteStyle);
    before.parentNode.insertBefore(n, before);
    notes.push(n);
  }

  function disableWrites() {
    var buttons = writeButtons();
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      if (b.disabled || !b.parentNode) {
        continue; // not ours to enable later
      }
      b.disabled = true;
      disabled.push(b);
      addNote(b);
    }
    var controls = document.querySelectorAll('[' + WRITE + ']');
    for (var j = 0; j < controls.length; j++) {
      var c = controls[j];
      if (c.tagName === 'FORM' || c.tagName === 'BUTTON' || c.tagName === 'INPUT') {
        continue;
      }
      blocked.push([c, c.getAttribute('aria-disabled'), c.style.getPropertyValue('pointer-events'), c.style.getPropertyValue('opacity')]);
      c.setAttribute('aria-disabled', 'true');
      c.style.setProperty('pointer-events', 'none');
      c.style.setProperty('opacity', '0.5');
    }
  }

  function restoreWrites() {
    var i;
    for (i = 0; i < disabled.length; i++) {
      disabled[i].disabled = false;
    }
    for (i = 0; i < notes.length; i++) {
      if (notes[i].parentNode) {
        notes[i].parentNode.removeChild(notes[i]);
      }
    }
    for (i = 0; i < blocked.length; i++) {
      var b = blocked[i], c = b[0];
      if (b[1] === null) {
        c.removeAttribute('aria-disabled');
      } else {
        c.setAttribute('aria-disabled', b[1]);
      }
      c.style.setProperty('pointer-events', b[2]);
      c.style.setProperty('opacity', b[3]);
    }
    disabled = [];
    notes = [];
    blocked = [];
  }

  // reviveServerButtons enables the buttons the gate disabled in the page
  // (a disabled button right after its note) and removes their notes.
  function reviveServerButtons() {
    var ns = document.querySelectorAll('.ckanops-submit-notice');
    for (var i = 0; i < ns.length; i++) {
      var n = ns[i], b = n.nextElementSibling;
      if (b && (b.tagName === 'BUTTON' || b.tagName === 'INPUT') && b.disabled) {
        b.disabled = false;
        revived.push(b);
      }
      n.parentNode.removeChild(n);
    }
  }

  // Clicks on marked controls and submissions of marked forms do nothing
  // during a maintenance (htmx and CKAN's modules listen on the elements:
  // these listeners, capturing on the window, come first).
  function onClick(e) {
    if (!maint || !e.target || !e.target.closest) {
      return;
    }
    var c = e.target.closest('[' + WRITE + ']');
    if (c && c.tagName !== 'FORM') {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  function onSubmit(e) {
    var f = e.target;
    if (maint && f && f.hasAttribute && f.hasAttribute(WRITE)) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  function keyOf(st) {
    return [st.mode, !!st.overrun, st.message || '', st.until || ''].join('\n');
  }

  function enter(st) {
    if (!maint) {
      maint = true;
      disableWrites();
    }
    var key = keyOf(st);
    if (bannerKey === null && serverMaint && currentBanner() === first && first &&
        pageMode === st.mode && !!st.overrun === /longer than planned/.test(first.textContent)) {
      bannerKey = key; // the gate's own banner says so already
      return;
    }
    if (key !== bannerKey) {
      showBanner(st);
      bannerKey = key;
    }
    updateETA();
  }

  function leave() {
    if (!maint) {
      return;
    }
    maint = false;
    bannerKey = null;
    eta = null;
    restoreWrites();
    if (serverMaint) {
      reviveServerButtons();
      showOver();
    } else {
      removeBanner();
    }
  }

  function apply(st) {
    if (!st || typeof st.mode !== 'string') {
      return false;
    }
    if (st.mode === 'read-only' || st.mode === 'down') {
      enter(st);
    } else if (st.mode === 'live') {
      leave();
    }
    return true;
  }

  var delay = poll;
  var inflight = false;

  function schedule(ms) {
    clearTimeout(timer);
    timer = 0;
    if (stopped || document.hidden) {
      return; // onVisibility polls when the page is seen again
    }
    timer = setTimeout(tick, ms * (0.8 + Math.random() * 0.4));
  }

  function tick() {
    timer = 0;
    if (stopped || inflight || document.hidden) {
      return;
    }
    inflight = true;
    fetch(statusURL, { cache: 'no-store', credentials: 'omit' })
      .then(function (res) {
        if (!res.ok) {
          throw new Error('status ' + res.status);
        }
        return res.json();
      })
      .then(apply)
      .catch(function () {
        return false;
      })
      .then(function (ok) {
        inflight = false;
        delay = ok ? poll : Math.max(poll, Math.min(MAX_DELAY, delay * 2));
        schedule(delay);
      });
  }

  function onVisibility() {
    if (document.hidden) {
      clearTimeout(timer);
      timer = 0;
    } else {
      tick();
    }
  }

  function onPageShow(e) {
    if (e.persisted) {
      tick(); // back from the back-forward cache: the state may be old
    }
  }

  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('pageshow', onPageShow);
  window.addEventListener('click', onClick, true);
  window.addEventListener('submit', onSubmit, true);
  schedule(poll);
})();
