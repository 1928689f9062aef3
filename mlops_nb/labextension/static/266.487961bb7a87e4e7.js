"use strict";(self.rspackChunkmlops_nb_lab=self.rspackChunkmlops_nb_lab||[]).push([[266],{646(o,e,r){var t=r(601),n=r.n(t),a=r(314),s=(r.n(a))()(n());s.push([o.id,`/* Colours and sizes come from the theme's variables (--jp-*), so the light and dark themes both work. */
.mlops-panel { padding: 0 8px 8px; overflow: auto; font-size: var(--jp-ui-font-size1); color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1); }
.mlops-panel h2 { font-size: var(--jp-ui-font-size2); margin: 8px 0 4px; }
.mlops-panel h3, .mlops-panel h4 { margin: 10px 0 4px; }
.mlops-panel .jp-Toolbar { flex-wrap: wrap; height: auto; min-height: var(--jp-private-toolbar-height, 24px); gap: 2px;
  padding: 2px 0; box-shadow: none; border-bottom: none; background: transparent; }
.mlops-toolbar { border-bottom: var(--jp-border-width) solid var(--jp-toolbar-border-color) !important; margin-bottom: 6px; }
.mlops-select .jp-select-wrapper, .mlops-model .jp-select-wrapper { height: 24px; }
.mlops-message, .mlops-param-error, .mlops-error { color: var(--jp-error-color1); white-space: pre-wrap; }
.mlops-node { cursor: pointer; outline: none; }
.mlops-box { stroke: var(--jp-border-color2); stroke-width: 1; }
.mlops-box.mlops-selected { stroke: var(--jp-ui-font-color0); stroke-width: 2; }
.mlops-box.mlops-active { stroke: var(--jp-brand-color1); stroke-width: 3; stroke-dasharray: 4 2; }
.mlops-node:focus-visible .mlops-box { stroke: var(--jp-brand-color1); stroke-width: 3; stroke-dasharray: none; }
.mlops-label { fill: #fff; font-weight: 600; font-size: 12px; }
.mlops-sub { fill: #fff; font-size: 10px; }
.mlops-edge { stroke: var(--jp-border-color1); stroke-width: 1.5; }
.mlops-metrics td, .mlops-gate-table td { padding: 1px 6px; }
.mlops-params label { display: block; margin: 2px 0; }
.mlops-params input[type=text] { width: 9em; }
.mlops-panel button.jp-mod-styled { height: 26px; line-height: 26px; margin: 4px 4px 4px 0; border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color3); color: var(--jp-ui-font-color0); }
.mlops-panel button.jp-mod-styled.jp-mod-accept { background: var(--jp-brand-color1); color: var(--jp-ui-inverse-font-color0); }
.mlops-panel button.jp-mod-styled:disabled { opacity: 0.5; cursor: not-allowed; }
.mlops-panel button:focus-visible, .mlops-panel select:focus-visible, .mlops-panel input:focus-visible {
  outline: 2px solid var(--jp-brand-color1); outline-offset: 1px; }
.mlops-spark-line { fill: none; stroke: var(--jp-brand-color1); stroke-width: 1.5; }
.mlops-job pre { font-size: 10px; max-height: 9em; overflow: auto; background: var(--jp-layout-color2); color: var(--jp-ui-font-color1); }
.mlops-fail td:first-child { color: var(--jp-error-color1); font-weight: 600; }
.mlops-pass td:first-child { color: var(--jp-success-color1); }
.mlops-trend { display: grid; grid-template-columns: 1fr 80px auto; align-items: center; gap: 4px; font-size: var(--jp-ui-font-size1); }
.mlops-trend > span:first-child { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.mlops-panel .jp-select-wrapper select.jp-mod-styled { font-size: var(--jp-ui-font-size1); height: 24px; line-height: 22px;
  padding-right: 20px; }
.mlops-note { color: var(--jp-ui-font-color2); }
`,""]),r.d(e,{},{A:s})},314(o){o.exports=function(o){var e=[];return e.toString=function(){return this.map(function(e){var r="",t=void 0!==e[5];return e[4]&&(r+="@supports (".concat(e[4],") {")),e[2]&&(r+="@media ".concat(e[2]," {")),t&&(r+="@layer".concat(e[5].length>0?" ".concat(e[5]):""," {")),r+=o(e),t&&(r+="}"),e[2]&&(r+="}"),e[4]&&(r+="}"),r}).join("")},e.i=function(o,r,t,n,a){"string"==typeof o&&(o=[[null,o,void 0]]);var s={};if(t)for(var p=0;p<this.length;p++){var l=this[p][0];null!=l&&(s[l]=!0)}for(var i=0;i<o.length;i++){var c=[].concat(o[i]);t&&s[c[0]]||(void 0!==a&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=a),r&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=r),n&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=n):c[4]="".concat(n)),e.push(c))}},e}},601(o){o.exports=function(o){return o[1]}},665(o,e,r){r.r(e);var t=r(72),n=r.n(t),a=r(825),s=r.n(a),p=r(659),l=r.n(p),i=r(56),c=r.n(i),d=r(540),u=r.n(d),m=r(113),f=r.n(m),v=r(646),h={};h.styleTagTransform=f(),h.setAttributes=c(),h.insert=l().bind(null,"head"),h.domAPI=s(),h.insertStyleElement=u(),n()(v.A,h);let b=v.A&&v.A.locals?v.A.locals:void 0;r.d(e,{},{default:b})},72(o){var e=[];function r(o){for(var r=-1,t=0;t<e.length;t++)if(e[t].identifier===o){r=t;break}return r}function t(o,t){for(var n={},a=[],s=0;s<o.length;s++){var p=o[s],l=t.base?p[0]+t.base:p[0],i=n[l]||0,c="".concat(l," ").concat(i);n[l]=i+1;var d=r(c),u={css:p[1],media:p[2],sourceMap:p[3],supports:p[4],layer:p[5]};if(-1!==d)e[d].references++,e[d].updater(u);else{var m=function(o,e){var r=e.domAPI(e);return r.update(o),function(e){e?(e.css!==o.css||e.media!==o.media||e.sourceMap!==o.sourceMap||e.supports!==o.supports||e.layer!==o.layer)&&r.update(o=e):r.remove()}}(u,t);t.byIndex=s,e.splice(s,0,{identifier:c,updater:m,references:1})}a.push(c)}return a}o.exports=function(o,n){var a=t(o=o||[],n=n||{});return function(o){o=o||[];for(var s=0;s<a.length;s++){var p=r(a[s]);e[p].references--}for(var l=t(o,n),i=0;i<a.length;i++){var c=r(a[i]);0===e[c].references&&(e[c].updater(),e.splice(c,1))}a=l}}},659(o){var e={};o.exports=function(o,r){var t=function(o){if(void 0===e[o]){var r=document.querySelector(o);if(window.HTMLIFrameElement&&r instanceof window.HTMLIFrameElement)try{r=r.contentDocument.head}catch(o){r=null}e[o]=r}return e[o]}(o);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(r)}},540(o){o.exports=function(o){var e=document.createElement("style");return o.setAttributes(e,o.attributes),o.insert(e,o.options),e}},56(o,e,r){o.exports=function(o){var e=r.nc;e&&o.setAttribute("nonce",e)}},825(o){o.exports=function(o){if("u"<typeof document)return{update:function(){},remove:function(){}};var e=o.insertStyleElement(o);return{update:function(r){var t,n,a;t="",r.supports&&(t+="@supports (".concat(r.supports,") {")),r.media&&(t+="@media ".concat(r.media," {")),(n=void 0!==r.layer)&&(t+="@layer".concat(r.layer.length>0?" ".concat(r.layer):""," {")),t+=r.css,n&&(t+="}"),r.media&&(t+="}"),r.supports&&(t+="}"),(a=r.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),o.styleTagTransform(t,e,o.options)},remove:function(){var o;null===(o=e).parentNode||o.parentNode.removeChild(o)}}}},113(o){o.exports=function(o,e){if(e.styleSheet)e.styleSheet.cssText=o;else{for(;e.firstChild;)e.removeChild(e.firstChild);e.appendChild(document.createTextNode(o))}}}}]);