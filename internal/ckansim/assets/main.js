// ckansim: a stand-in for CKAN's webassets bundle.
window.ckan = window.ckan || { SITE_ROOT: "", LOCALE_ROOT: "", simulated: true };
document.documentElement.classList.add("js");
