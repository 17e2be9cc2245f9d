console.log('hello from app.js')
