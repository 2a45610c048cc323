// Package annotate is the streaming HTML rewriter the gate applies to CKAN
// pages while a site is in read-only maintenance mode.
//
// It does four things to a text/html response, and nothing else:
//
//   - right after the <body> start tag it inserts a banner
//     (<div role="status" class="ckanops-banner">) naming the site, the
//     operator's message and the expected end of the maintenance;
//   - it replaces every <form method="post"> whose submission the gate would
//     refuse (Options.WouldRefuse) by a notice block
//     (<div class="ckanops-form-notice" role="note">), so edit pages keep the
//     site's look but say that editing is paused. GET forms and the forms the
//     gate lets through (the login form) are kept byte for byte. A form
//     that htmx submits (hx-post, hx-put, hx-patch or hx-delete, also with
//     a data- prefix; CKAN 2.12's API token forms have hx-post and no
//     method) is judged as htmx sends it: PUT, PATCH and DELETE are always
//     refused, a POST to the hx-post URL is asked about;
//   - it replaces every other element that would send a refused write by
//     itself (a control) by a note (<span class="ckanops-control-notice"
//     role="note">): an element with those htmx attributes (CKAN 2.12's
//     Follow button, <a hx-post="/dataset/follow/ID">), or one whose
//     data-module names CKAN's confirm-action module, which posts to the
//     element's href (Delete links outside forms). The element goes from
//     its start tag to its own end tag, as a refused form does (a void
//     element, just its tag). <html>, <head>, <body>, <frameset>,
//     <template>, <script> and <style> are never hidden as controls;
//   - in a form it keeps, it disables each submit button (<button> of type
//     submit, <input type=submit> or <input type=image>) whose formmethod
//     or formaction makes it submit a POST the gate would refuse, or whose
//     formmethod is put, patch or delete (htmx sends those as they are): the
//     button gets a disabled attribute right after its tag name and a note
//     before it (<span class="ckanops-submit-notice" role="note">). A
//     button that names its form with a form attribute is judged with that
//     form when the form came earlier in the page, and at its worst when
//     not (see rewriter.submitterRefused). A hidden form stays hidden
//     whatever its buttons say.
//
// With Options.Script, the banner is followed by the tag of the gate's
// notice script (<script src="..." defer data-ckanops-poll="SECONDS">),
// which polls the gate's public status and tells the open page when the
// maintenance starts, ends or overruns. With Notice.Overrun the banner and
// the form notices say that the work is taking longer than planned.
//
// While a planned window is announced (Options.Announce; the site is
// live), the rewrite is different: the banner is the announce banner
// (data-ckanops-mode="announce": when the window starts, how long it
// lasts, when it ends, the message), and nothing is hidden or disabled.
// Every form, submit button and control that would be replaced, disabled
// or hidden in read-only mode (as WouldRefuse judges them, and, as nothing
// is hidden, also those inside such forms and controls) gets a
// data-ckanops-write attribute right after its tag name, so that the
// notice script can disable them if the maintenance starts while the page
// is open. Everything else about the rewrite (streaming, byte for byte,
// where the banner goes) is the same.
//
// Every byte outside those changes is copied through unchanged: each
// token's raw bytes (the page split as golang.org/x/net/html's Tokenizer
// splits it) are written as they came, so comments, doctypes, <script> and
// <style> contents, odd casing and unquoted attributes survive, and
// malformed HTML passes through untouched.
//
// What it must not do:
//
//   - buffer a page. The rewriter holds at most one token (capped at
//     maxTokenBytes; past that it stops rewriting and copies the rest of the
//     page through verbatim) plus the few bytes it inserts. Inside a refused
//     form or control it drops tokens as they come; it never collects them.
//     A form's submit buttons and controls are judged one by one as they
//     come, never by holding the form back: what it keeps of the forms it
//     has passed is the open form's method and action (at most a token)
//     and, for form attributes, up to maxFormIDs short ids with their
//     forms' short actions.
//   - touch anything that is not an HTML page: Response leaves non-HTML
//     bodies, HEAD responses, 1xx/204/205/206/304 responses, attachments and
//     unknown content encodings exactly as they are (same Body value).
//   - run in live mode, but to announce a window. The gate calls it only
//     while the mode is read-only, or with Options.Announce while a window
//     is announced; this package does not look at the mode and rewrites
//     whatever it is given.
//   - enforce anything. Replacing a form is a courtesy to the reader; refusing
//     the write is the gate's job, which it does whether or not a page was
//     annotated.
//
// The operator's message (and the window's) and the site title are
// untrusted: they are HTML-escaped wherever they appear (so is the script's
// URL), and the inserted fragments are plain ASCII (other characters become
// numeric character references) so they read the same whatever charset the
// page declares.
package annotate
