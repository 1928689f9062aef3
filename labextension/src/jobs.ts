// The runs started from this panel (the last three), with the end of their output.
import { Widget } from '@lumino/widgets';
import { el } from './dom';
import { PipelineModel } from './model';

export class JobsView extends Widget {
  constructor(private readonly model: PipelineModel) {
    super();
    this.addClass('mlops-jobs');
    model.stateChanged.connect(this.update, this);
  }

  protected onUpdateRequest(): void {
    const jobs = this.model.state?.jobs ?? [];
    const boxes = jobs.slice(-3).reverse().map(j => {
      const box = el('div', { class: `mlops-job mlops-job-${j.status}` });
      box.append(el('div', {}, `mlops-nb ${j.args.join(' ')}: ${j.status}`), el('pre', {}, j.log.slice(-8).join('\n')));
      return box;
    });
    this.node.replaceChildren(...(boxes.length ? [el('h3', {}, 'Runs started here'), ...boxes] : []));
  }
}
