pip install -q --no-deps --target /tmp/pydeps .whl/*.whl >/dev/null 2>&1; export PYTHONPATH=/tmp/pydeps:$PWD
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits;nproc
python3 - <<'P'
import time,torch,torch.nn.functional as F
from dcsm.config import load_yaml,to_plain
from dcsm.features import FeatureBatch
from dcsm.train.module import DCSMModule
cfg=to_plain(load_yaml('configs/default.yaml'));cfg['encoder']['pretrained']=None
m=DCSMModule(cfg).cuda();m.log=lambda *a,**k:None;head0=m.model.head
d='cuda'
def fb(n):
 p=F.normalize(torch.randn(n,196,512,device=d),dim=-1).half();t=F.normalize(torch.randn(n,4,30,512,device=d),dim=-1).half()
 k=torch.arange(30,device=d)<torch.randint(5,20,(n,4,1),device=d)
 ip=F.normalize(torch.randn(n,512,device=d),dim=-1).half();tp=F.normalize(torch.randn(n,4,512,device=d),dim=-1).half()
 return FeatureBatch(patches=p,image_pooled=ip,tokens=t*k[...,None],token_mask=k,token_ids=torch.randint(0,49407,(n,4,30),device=d)*k,text_pooled=tp,label=torch.randint(0,4,(n,),device=d))
for bs in (64,256,1024):
 b=fb(bs)
 for comp in (0,1):
  if comp and bs==64: continue
  m.model.head=torch.compile(head0) if comp else head0
  o=torch.optim.AdamW(head0.parameters());t0=time.time()
  for i in range(33):
   if i==3: torch.cuda.synchronize();ts=time.perf_counter();w=time.time()-t0
   with torch.autocast('cuda',dtype=torch.bfloat16): l=m.training_step(b,i)
   o.zero_grad();l.backward();o.step()
  torch.cuda.synchronize();s=time.perf_counter()-ts
  print(f'bs={bs} compile={comp} warm={w:.1f}s pairs/s={30*bs*4/s:,.0f} mem={torch.cuda.max_memory_allocated()/2**30:.1f}G',flush=True)
P
